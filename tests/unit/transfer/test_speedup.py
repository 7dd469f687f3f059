"""VPGTrans's speed-up on validation curves: scratch steps to its best / transfer steps to beat it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vict.transfer.speedup import plot_curves, speedup


def test_ratio_of_steps_to_the_scratch_best() -> None:
    scratch = [(100, 20.0), (200, 30.0), (300, 41.0), (400, 41.0), (500, 40.0)]
    transfer = [(50, 35.0), (100, 41.0), (150, 42.0), (200, 43.0)]
    result = speedup(scratch, transfer)
    assert (result.target, result.scratch_steps, result.transfer_steps) == (41.0, 300, 150)
    assert result.ratio == pytest.approx(2.0)
    assert speedup(scratch, transfer, beat="match").transfer_steps == 100
    assert result.to_dict()["steps_to_target"] == {"scratch": 300, "vpgtrans": 150}


def test_a_loss_curve_counts_downwards_and_a_transfer_that_never_beats_has_no_ratio() -> None:
    scratch = [(10, 3.0), (20, 2.0), (30, 2.5)]
    result = speedup(scratch, [(5, 2.4), (10, 1.9)], higher_is_better=False)
    assert (result.target, result.scratch_steps, result.transfer_steps, result.ratio) == (2.0, 20, 10, 2.0)
    never = speedup(scratch, [(5, 2.4), (10, 2.0)], higher_is_better=False)
    assert never.transfer_steps is None and never.ratio is None and never.to_dict()["speedup"] is None


def test_bad_curves_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        speedup([], [(1, 1.0)])
    with pytest.raises(ValueError, match="increase strictly"):
        speedup([(2, 1.0), (1, 2.0)], [(1, 1.0)])
    out = plot_curves({"scratch": [(1, 1.0), (2, 2.0)], "vpgtrans": [(1, 2.0)]}, tmp_path / "transfer.png", "acc")
    assert out.stat().st_size > 1000
