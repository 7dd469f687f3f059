"""How a run continues from an earlier checkpoint: ``resume`` (exactly where it stopped) or ``init_from`` (a new
stage that starts from the checkpoint's trainable weights with a fresh optimizer and schedule).

A resume must not change what the run computes, so its config is compared with the checkpoint's ``config.yaml``
and every difference outside ``may_change`` is refused by name. ``init_from`` needs a checkpoint of the same frozen
sources and method; what it holds is loaded, trainable parameters it lacks start fresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from vict.training.checkpoints import CONFIG_YAML

RESUME_MAY_CHANGE: frozenset[str] = frozenset(
    {
        "train.output_dir",
        "train.resume",
        "train.init_from",
        "train.save_every",
        "train.keep_last",
        "train.eval_every",
        "train.val_batches",
        "train.sample_every",
        "train.sample_count",
        "train.sample_max_new_tokens",
        "train.log_every",
        "train.num_threads",
        "train.cache_vision_features",
        "train.vision_cache_max_gb",
        "data.num_workers",
        "model.zoo_dir",
        "model.logits_on_labelled_only",
    }
)
"""Settings a resumed run may change: where and how often things are written, and speed switches that give the
same numbers. Any other difference from the checkpoint's ``config.yaml`` is refused (start a new stage with
``train.init_from`` instead)."""


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix.rstrip("."): data}
    return {prefix.rstrip("."): data}


def config_differences(saved: dict[str, Any], current: dict[str, Any], may_change: Iterable[str]) -> list[str]:
    """``key: saved -> current`` for every leaf setting that differs and is not in ``may_change``."""
    allowed = set(may_change)
    old, new = _flatten(saved), _flatten(current)
    out = []
    for key in sorted(set(old) | set(new)):
        if key in allowed or any(key.startswith(a + ".") for a in allowed):
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            out.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return out


def check_resume_config(checkpoint: Path, cfg: Any, may_change: Iterable[str] | None = None) -> None:
    """Refuse to resume ``checkpoint`` with a config that changes what the run computes (``ValueError`` listing
    every changed setting with its saved and new value)."""
    from vict.config import config_to_dict

    path = Path(checkpoint) / CONFIG_YAML
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a resumable checkpoint holds the run's config.yaml")
    saved = yaml.safe_load(path.read_text()) or {}
    changed = config_differences(saved, config_to_dict(cfg), RESUME_MAY_CHANGE if may_change is None else may_change)
    if changed:
        raise ValueError(
            f"cannot resume {checkpoint}: this run's config differs from the checkpoint's ({path}) in settings that "
            "change what the run computes:\n  " + "\n  ".join(changed) + "\nRestore those settings to resume, or "
            f"start a new stage from the checkpoint's weights with train.init_from={checkpoint} (fresh optimizer "
            "and schedule) in a new train.output_dir."
        )


def load_init_weights(model: Any, checkpoint: Path) -> dict[str, list[str]]:
    """Load ``checkpoint``'s trainable weights into ``model`` for ``train.init_from``; returns ``load_trainable``'s
    ``{"loaded", "kept"}``. The checkpoint must come from the same frozen VPG and LLM and the same method (or
    ``none``, whose checkpoints hold no method weights)."""
    from vict.models.vision_llm import CONFIG_FILE, VisionLLMConfig

    theirs = VisionLLMConfig.load(Path(checkpoint) / CONFIG_FILE)
    ours = model.config
    problems = []
    for name in ("vpg_source", "llm_source"):
        if getattr(theirs, name) != getattr(ours, name):
            problems.append(f"{name}: the checkpoint's {getattr(theirs, name)} vs this run's {getattr(ours, name)}")
    if theirs.method.type not in (ours.method.type, "none"):
        problems.append(f"method.type: the checkpoint's {theirs.method.type!r} vs this run's {ours.method.type!r}")
    if problems:
        raise ValueError(
            f"train.init_from={checkpoint}: not a checkpoint this model can start from:\n  " + "\n  ".join(problems)
        )
    return model.load_trainable(checkpoint, strict=False)
