"""VPGTrans in a run: the merged projector for a target LM, the from-scratch baseline, and the speed-up on curves.

Data flow (``vict quickstart``'s ``vict-vpgtrans`` row and its transfer measurement):

    source LM + target LM + world train captions ─► word converter ─► ∘ BLIP-2 projector ─► merged_projector
    vpgtrans run (warm-up from the merged projector, then joint)  ─┐ validation loss every eval_every steps
    scratch run (Q-Former re-initialised, no warm-up, random projector) ─┘ (metrics.jsonl of every stage)
    ─► curves (the VPGTrans curve counts its warm-up steps first) ─► speed-up, transfer.png

The validation score is the validation loss (lower is better) on the world's val split: the same instructions as
training, measured for every run at the same steps at no extra generation cost.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vict.training.metrics import read_metrics

CONVERTER_DIR = "converter"
MERGED_NAME = "merged_projector.safetensors"


def prepare_merged_projector(
    blip2_dir: Path,
    source_lm: Path,
    target_lm: Path,
    texts: Sequence[str],
    out_dir: Path,
    seed: int = 0,
    texts_source: str = "texts",
) -> tuple[Path, dict[str, Any]]:
    """Fit the word converter ``source_lm -> target_lm`` on ``texts`` into ``out_dir/converter/`` and write the
    merged projector ``out_dir/converter/merged_projector.safetensors``; return its path and the converter's
    metadata (with the merge summary under ``merge``)."""
    from vict.transfer.converter import fit_word_converter, write_merged_projector

    conv_dir = Path(out_dir) / CONVERTER_DIR
    _, meta = fit_word_converter(
        source_lm, target_lm, list(texts), out_dir=conv_dir, seed=seed, texts_source=texts_source
    )
    merged = conv_dir / MERGED_NAME
    meta["merge"] = write_merged_projector(conv_dir, blip2_dir, merged)
    return merged, meta


def scratch_config(cfg: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """The from-scratch baseline of a ``vpgtrans`` run config (a ``vict.config`` dict): the Q-Former and queries
    re-initialised, no warm-up, the projector from a random start; the same data, LLM, joint budget and seed."""
    out = copy.deepcopy(cfg)
    if out.get("method", {}).get("type") != "vpgtrans":
        raise ValueError(f"scratch_config takes a vpgtrans run config, got method {out.get('method')}")
    out["method"].update({"qformer_init": "random", "warmup_epochs": 0})
    out["connector"] = {"type": "qformer_tokens", "init_weights": None}
    out["train"]["output_dir"] = str(output_dir)
    return out


def stage_curve(run_dir: Path, stages: Sequence[str] = ("warmup", "joint")) -> list[tuple[int, float]]:
    """Validation-loss points ``(step, loss)`` of a staged run (``run_dir/<stage>/metrics.jsonl``), the steps of each
    stage counted after those of the stages before it (a missing stage, e.g. no warm-up, adds nothing)."""
    curve: list[tuple[int, float]] = []
    offset = 0
    for stage in stages:
        records = read_metrics(Path(run_dir) / stage / "metrics.jsonl")
        if not records:
            continue
        curve += [(offset + int(r["step"]), float(r["loss"])) for r in records if r.get("split") == "val"]
        offset += max(int(r["step"]) for r in records if "step" in r)
    return curve


def transfer_summary(vpgtrans_dir: Path, scratch_dir: Path, plot: Path | None = None) -> dict[str, Any]:
    """``{"speedup", "steps_to_target": {"scratch", "vpgtrans"}, "target", "metric", "curves"}`` of two runs (and
    ``transfer.png`` when ``plot`` is given)."""
    from vict.transfer.speedup import plot_curves, speedup

    curves = {"vpgtrans": stage_curve(vpgtrans_dir), "scratch": stage_curve(scratch_dir)}
    result = speedup(curves["scratch"], curves["vpgtrans"], higher_is_better=False).to_dict()
    result["metric"] = "validation loss (lower is better)"
    result["warmup_steps"] = stage_curve_offset(vpgtrans_dir)
    result["curves"] = {k: [[s, round(v, 5)] for s, v in c] for k, c in curves.items()}
    if plot is not None:
        plot_curves(curves, plot, ylabel="validation loss", title="VPG transfer: VPGTrans vs from scratch")
    return result


def stage_curve_offset(run_dir: Path, stage: str = "warmup") -> int:
    """Optimiser steps of one stage of a staged run (0 when it did not run)."""
    records = read_metrics(Path(run_dir) / stage / "metrics.jsonl")
    return max((int(r["step"]) for r in records if "step" in r), default=0)
