"""VPGTrans's speed-up: training steps of the from-scratch VPG to reach its best validation score, divided by the
steps VPGTrans needs to beat that score (its warm-up steps included, as the paper counts them).

A curve is a list of ``(step, score)`` points, steps increasing; ``higher_is_better`` says the score's direction
(accuracy, CIDEr: True; a validation loss: False). The best of the from-scratch curve is its target: the first step
where it is reached counts as the scratch run's cost (later equal points do not make it slower).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

Curve = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class Speedup:
    """The paper's measurement on two curves."""

    target: float
    """The from-scratch run's best validation score."""
    scratch_steps: int
    """The first step at which the from-scratch run reached ``target``."""
    transfer_steps: int | None
    """The first step at which the transfer run beat ``target`` (``None``: never within its curve)."""

    @property
    def ratio(self) -> float | None:
        """``scratch_steps / transfer_steps`` (``None`` when the transfer never beat the target)."""
        return None if not self.transfer_steps else self.scratch_steps / self.transfer_steps

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "target": self.target,
            "speedup": None if self.ratio is None else round(self.ratio, 3),
            "steps_to_target": {"scratch": self.scratch_steps, "vpgtrans": self.transfer_steps},
        }


def _check(curve: Curve, name: str) -> list[tuple[int, float]]:
    points = [(int(s), float(v)) for s, v in curve]
    if not points:
        raise ValueError(f"the {name} curve is empty: evaluate during training (train.eval_every > 0)")
    steps = [s for s, _ in points]
    if steps != sorted(set(steps)):
        raise ValueError(f"the {name} curve's steps must increase strictly: {steps}")
    return points


def speedup(scratch: Curve, transfer: Curve, higher_is_better: bool = True, beat: str = "strict") -> Speedup:
    """The speed-up of ``transfer`` over ``scratch`` (module doc).

    Args:
        scratch: the from-scratch run's validation curve.
        transfer: the VPGTrans run's curve, steps counted from the start of its warm-up.
        higher_is_better: direction of the score.
        beat: ``strict`` (the transfer must do better than the target) or ``match`` (as well or better).
    """
    if beat not in ("strict", "match"):
        raise ValueError(f"beat={beat!r}: use 'strict' or 'match'")
    scratch_points, transfer_points = _check(scratch, "from-scratch"), _check(transfer, "transfer")
    sign = 1.0 if higher_is_better else -1.0
    target = max((sign * v for _, v in scratch_points)) * sign
    scratch_steps = next(s for s, v in scratch_points if v == target)

    def beats(value: float) -> bool:
        return sign * value > sign * target if beat == "strict" else sign * value >= sign * target

    transfer_steps = next((s for s, v in transfer_points if beats(v)), None)
    return Speedup(target=target, scratch_steps=scratch_steps, transfer_steps=transfer_steps)


def plot_curves(curves: dict[str, Curve], out: Path, ylabel: str, title: str = "VPG transfer") -> Path:
    """``transfer.png``: validation score against training steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        points = list(curve)
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, label=name)
    ax.set_xlabel("training steps (VPGTrans: warm-up included)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
