"""Human-readable parameter summaries (the table `vict` logs whenever it builds a model)."""

from __future__ import annotations

TRAINABLE_ROWS = ("extra_queries", "projection", "peft")
FROZEN_ROWS = ("frozen_vision", "frozen_qformer", "frozen_llm", "frozen_other")


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


def parameter_table(counts: dict[str, int], title: str = "parameters by part") -> str:
    """A fixed-width table of ``count_by_part`` output: trainable parts, their sum, frozen parts, totals."""
    total = max(counts.get("total", 0), 1)
    lines = [title, f"  {'part':<16} {'parameters':>14} {'':>9} {'share':>8}"]

    def row(name: str, key: str) -> None:
        n = counts.get(key, 0)
        lines.append(f"  {name:<16} {n:>14,} {human_count(n):>9} {100 * n / total:>7.3f}%")

    for key in TRAINABLE_ROWS:
        row(key, key)
    row("= trainable", "trainable")
    for key in FROZEN_ROWS:
        if key in counts:
            row(key.replace("frozen_", "frozen "), key)
    row("= frozen", "frozen")
    row("total", "total")
    return "\n".join(lines)
