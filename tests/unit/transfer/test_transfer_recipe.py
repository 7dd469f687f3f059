"""The transfer recipe's pieces: curves of a staged run (warm-up steps first), the from-scratch baseline config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vict.recipes.transfer import scratch_config, stage_curve, transfer_summary


def _metrics(path: Path, records: list[dict]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_joint_stage_is_counted_after_the_warmup(tmp_path: Path) -> None:
    run = tmp_path / "vpgtrans"
    _metrics(run / "warmup", [{"step": s, "split": "train", "loss": 3.0} for s in (1, 2, 3)] + [
        {"step": 3, "split": "val", "loss": 2.5}
    ])  # fmt: skip
    _metrics(run / "joint", [{"step": 2, "split": "val", "loss": 2.0}, {"step": 4, "split": "train", "loss": 1.5},
                             {"step": 4, "split": "val", "loss": 1.8}])  # fmt: skip
    assert stage_curve(run) == [(3, 2.5), (5, 2.0), (7, 1.8)]
    scratch = tmp_path / "scratch"
    _metrics(scratch / "joint", [{"step": 2, "split": "val", "loss": 2.2}, {"step": 4, "split": "val", "loss": 1.9}])
    summary = transfer_summary(run, scratch, plot=tmp_path / "transfer.png")
    assert summary["steps_to_target"] == {"scratch": 4, "vpgtrans": 7} and summary["warmup_steps"] == 3
    assert summary["speedup"] == pytest.approx(4 / 7, abs=1e-3) and (tmp_path / "transfer.png").is_file()


def test_scratch_config_reinitialises_the_vpg_and_drops_the_warmup_and_init() -> None:
    cfg = {
        "method": {"type": "vpgtrans", "warmup_epochs": 1.0},
        "connector": {"type": "qformer_tokens", "init_weights": "merged.safetensors"},
        "train": {"output_dir": "a", "max_steps": 10},
    }
    out = scratch_config(cfg, Path("b"))
    assert out["method"] == {"type": "vpgtrans", "warmup_epochs": 0, "qformer_init": "random"}
    assert out["connector"]["init_weights"] is None and out["train"] == {"output_dir": "b", "max_steps": 10}
    assert cfg["connector"]["init_weights"] == "merged.safetensors"  # the input is left as it was
    with pytest.raises(ValueError, match="vpgtrans run config"):
        scratch_config({"method": {"type": "lora"}, "train": {}}, Path("c"))
