"""Human-readable parameter summaries (the table `vict` logs whenever it builds a model)."""

from __future__ import annotations

from typing import Any


def human_count(n: int) -> str:
    """``1234567 -> "1.23M"``; empty below 10k (the exact count says it all)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale and n >= 10_000:
            return f"{n / scale:.2f}{unit}"
    return ""


def human_bytes(n: int) -> str:
    """``4194304 -> "4.00 MiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.2f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.2f} GiB"


def parameter_table(counts: dict[str, Any], title: str = "parameters by part") -> str:
    """A fixed-width table of ``VisionLLM.trainable_parameters_by_part()``: per part its trainable and frozen
    parameters, then the sums, and the trainable share of the whole model."""
    total = max(int(counts.get("total", 0)), 1)
    lines = [title, f"  {'part':<15} {'trainable':>14} {'':>8} {'frozen':>16} {'':>8}"]

    def row(name: str, trainable: int, frozen: int) -> None:
        lines.append(
            f"  {name:<15} {trainable:>14,} {human_count(trainable):>8} {frozen:>16,} {human_count(frozen):>8}"
        )

    for part, entry in counts.get("parts", {}).items():
        row(part, entry["trainable"], entry["frozen"])
    row("= total", int(counts.get("trainable", 0)), int(counts.get("frozen", 0)))
    lines.append(f"  trainable share: {100 * counts.get('trainable', 0) / total:.3f}% of {total:,} parameters")
    return "\n".join(lines)
