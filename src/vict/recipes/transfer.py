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


ABLATIONS: dict[str, dict[str, Any]] = {
    "no_converter": {"connector.init_weights": None},
    "no_warmup": {"method.warmup_epochs": 0},
    "warmup_1x": {"method.warmup_lr_scale": 1.0},
    "warmup_10x": {"method.warmup_lr_scale": 10.0},
}
"""VPGTrans's ablations (the paper's): each changes one thing of the ``vpgtrans`` run config (5x is the run)."""


def ablation_config(cfg: dict[str, Any], overrides: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """``cfg`` (a ``vpgtrans`` run config dict) with dotted ``overrides`` and its own ``output_dir``."""
    out = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        if section == "connector" and value is None and key == "init_weights":
            out["connector"] = {"type": "qformer_tokens", "init_weights": None}
            continue
        out.setdefault(section, {})[key] = value
    out["train"]["output_dir"] = str(output_dir)
    return out


def run_ablations(quickstart_dir: Path, names: Sequence[str] | None = None, printer: Any = print) -> dict[str, Any]:
    """Train VPGTrans's ablations of a quickstart run (its ``vict-vpgtrans`` config, against its ``vpg-scratch``
    curve) into ``quickstart_dir/ablations/<name>/``; write ``ablations.json`` and ``transfer_ablations.png`` there.

    Returns ``{name: {"speedup", "steps_to_target", "overrides"}}`` with the run itself as ``vpgtrans_5x``."""
    import json

    from vict.config import config_from_dict
    from vict.recipes.train import train
    from vict.transfer.speedup import plot_curves, speedup

    root = Path(quickstart_dir)
    report_path = root / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(
            f"{report_path}: run `vict quickstart --out {root}` first (it trains the vpgtrans row)"
        )
    report = json.loads(report_path.read_text())
    base = report.get("config", {}).get("train", {}).get("vict-vpgtrans")
    if base is None:
        raise ValueError(
            f"{report_path}: no vict-vpgtrans row in this run; its preset must include the vpgtrans method"
        )
    unknown = sorted(set(names or ()) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablations {unknown}; choose from {sorted(ABLATIONS)}")
    scratch = stage_curve(root / "runs" / "vpg-scratch")
    curves = {"from scratch": scratch, "vpgtrans (5x warm-up)": stage_curve(root / "runs" / "vict-vpgtrans")}
    results: dict[str, Any] = {
        "vpgtrans_5x": speedup(scratch, curves["vpgtrans (5x warm-up)"], higher_is_better=False).to_dict()
    }
    out = root / "ablations"
    for name in names or list(ABLATIONS):
        cfg = ablation_config(base, ABLATIONS[name], out / name)
        printer(f"ablation {name}: {ABLATIONS[name]}")
        # regenerated outputs, like the quickstart's runs/: a rerun replaces the previous one
        result = train(config_from_dict(cfg, source=f"ablation {name}"), overwrite=True)
        if result.final_dir is None:
            raise RuntimeError(f"ablation {name} stopped before the end ({result.stopped_by})")
        curves[name] = stage_curve(out / name)
        results[name] = speedup(scratch, curves[name], higher_is_better=False).to_dict()
        results[name]["overrides"] = ABLATIONS[name]
    (out / "ablations.json").write_text(json.dumps({"results": results, "curves": curves}, indent=2) + "\n")
    plot_curves(curves, out / "transfer_ablations.png", ylabel="validation loss", title="VPGTrans ablations")
    return results
