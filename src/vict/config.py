"""Typed run configuration: dataclasses, YAML loading, dotted overrides, validation.

A run is a YAML file plus ``key.sub=value`` overrides::

    cfg = load_config("configs/world/vict_lora.yaml", ["train.max_steps=50", "method.r=4"])

Loading collects every problem before raising (unknown keys with did-you-mean suggestions, values of the
wrong type, values outside their choices, broken relationships between fields) and raises one
:class:`ConfigError` that lists them all, each with the bad key, the value received and the fix.
Field help lives in ``metadata={"help": ...}`` and is printed by ``vict validate --help``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from vict.registry import ConnectorSpec, MethodSpec, connector_names, get_connector, get_method, method_names
from vict.settings import SettingsError
from vict.settings import help_field as _help

__all__ = [
    "INSTRUCTION_KINDS",
    "ConfigError",
    "ConnectorSpec",
    "DataConfig",
    "MethodSpec",
    "ModelConfig",
    "TrainConfig",
    "VictConfig",
    "apply_overrides",
    "check_paths",
    "config_from_dict",
    "config_reference",
    "config_to_dict",
    "load_config",
    "load_data_config",
    "parse_override_value",
    "save_config",
]

INSTRUCTION_KINDS: tuple[str, ...] = ("cap", "qa", "qa_cap", "cap_qa", "qa_qa")
"""The five VICT instruction types (DESIGN.md §2)."""


class ConfigError(SettingsError):
    """One or more configuration problems, all reported at once.

    Attributes:
        problems: one line per problem, each naming the key, the value received and the fix.
        source: the file (or ``"<dict>"``) the configuration came from.
    """

    def __init__(self, problems: list[str], source: str = "<config>") -> None:
        self.source = source
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(problems, message=f"{len(problems)} config {noun} in {source}:\n{lines}")


@dataclass
class ModelConfig:
    """Which model to build: the frozen VPG source, the target LLM and the trainable extras."""

    builder: Literal["tiny", "hf", "zoo"] = _help(
        "'tiny': random in-process model from vict.models.builders.build_tiny (tests, toys); "
        "'hf': a BLIP-2 VPG from vpg_source plus a causal LM from llm_source; "
        "'zoo': the miniature model zoo (its pretrained tiny BLIP-2 as the VPG, its tiny LLaMA as the target LM): "
        "the shipped one for zoo_preset=default, otherwise built on first use and cached under zoo_dir",
        default="tiny",
    )
    vpg_source: str | None = _help(
        "BLIP-2 checkpoint for the frozen VPG: a Hugging Face directory or hub id "
        "(e.g. Salesforce/blip2-opt-2.7b), or a LAVIS .pth file when vpg_format=lavis",
        default=None,
    )
    vpg_format: Literal["hf", "lavis"] = _help("format of vpg_source", default="hf")
    llm_source: str | None = _help(
        "target causal LM: Hugging Face directory or hub id (e.g. a LLaMA-7B directory)", default=None
    )
    num_extra_queries: int = _help("trainable query tokens appended to the frozen originals", default=8)
    frozen_dtype: Literal["float32", "bfloat16", "float16"] = _help(
        "dtype of the frozen parts (vision, Q-Former, LLM base); trainable parts stay float32",
        default="float32",
    )
    logits_on_labelled_only: bool = _help(
        "compute the LM head only at positions with a label (same loss, less compute and memory)", default=True
    )
    zoo_preset: Literal["micro", "fast", "default"] = _help(
        "miniature zoo preset when builder=zoo (vict.zoo.presets; 'default' ships with the package and is what "
        "`vict quickstart` uses)",
        default="default",
    )
    zoo_dir: str = _help(
        "folder that caches built zoos of presets that do not ship, when builder=zoo (zoo_dir/zoo/<hash of zoo "
        "config + seed>/)",
        default="runs",
    )
    tiny: dict[str, Any] = _help(
        "keyword arguments for build_tiny (sizes, seed); checked against its signature by `vict validate`",
        default_factory=dict,
    )

    def __post_init__(self) -> None:
        problems = []
        if self.builder == "hf":
            for name in ("vpg_source", "llm_source"):
                if not getattr(self, name):
                    problems.append(
                        f"model.{name} is required when model.builder=hf; set it to a local directory or hub id"
                    )
        if self.num_extra_queries < 0:
            problems.append(f"model.num_extra_queries={self.num_extra_queries} must be >= 0")
        if problems:
            raise ConfigError(problems)


def _default_ratios() -> dict[str, float]:
    return {kind: 1.0 for kind in INSTRUCTION_KINDS}


@dataclass
class DataConfig:
    """Where the images and annotations are, and how instructions are built from them."""

    world: str | None = _help(
        "miniature world directory written by `vict data world --out DIR` (instead of the paths below)",
        default=None,
    )
    captions: str | None = _help(
        "COCO captions file; '{split}' is replaced by the split name (e.g. .../captions_{split}2014.json)",
        default=None,
    )
    questions: str | None = _help(
        "GQA balanced questions file; '{split}' allowed (e.g. .../{split}_balanced_questions.json)", default=None
    )
    images: str | None = _help("images directory; '{split}' allowed", default=None)
    vg_image_data: str | None = _help(
        "Visual Genome image_data.json, joins GQA imageId to COCO id (needed for real COCO + GQA)", default=None
    )
    train_split: str = _help("split used for training", default="train")
    val_split: str | None = _help("split used for validation loss and samples (null: none)", default="val")
    ratios: dict[str, float] = _help(
        "relative sampling weights of the instruction kinds cap, qa, qa_cap, cap_qa, qa_qa (normalised)",
        default_factory=_default_ratios,
    )
    sentence_ratio: float = _help(
        "fraction of QA targets in the sentence style (GQA fullAnswer); the rest are short answers", default=0.5
    )
    templates: str | None = _help("YAML file of prompt templates (null: the built-in defaults)", default=None)
    max_length: int = _help("maximum tokens per training sequence (truncated from the context side)", default=256)
    padding_side: Literal["right", "left"] = _help("padding side of training batches", default="right")
    use_chat_template: bool = _help("wrap prompts in the tokenizer's chat template", default=False)
    bad_input: Literal["fail", "skip"] = _help(
        "'fail': stop at the first bad image/record with its name; 'skip': skip it, count it, report at the end",
        default="fail",
    )
    num_workers: int = _help("DataLoader worker processes (0: load in the main process)", default=0)
    max_images: int | None = _help("use at most this many images per split (null: all)", default=None)
    scienceqa: str | None = _help(
        "ScienceQA problems.json (official layout: pid_splits.json and images/ beside it) to mix into training "
        "(data.sqa_ratio); null with data.world: the world's scienceqa/problems.json",
        default=None,
    )
    sqa_ratio: float = _help(
        "fraction of training examples that are ScienceQA problems (those without an image are text-only rows)",
        default=0.0,
    )
    sqa_format: str = _help(
        "ScienceQA prompt format of those examples (vict.data.scienceqa.FORMATS): QCM-A, QCM-ALE (LaVIN's), QCM-EA or "
        "QCM-LEA (the solution before the letter), or the CQM- ones",
        default="QCM-A",
    )
    text_only_ratio: float = _help(
        "fraction of the caption-as-context instructions (cap_qa) that drop their image: text-only rows, LaVIN's "
        "mixed-modality training on the same annotations",
        default=0.0,
    )

    def __post_init__(self) -> None:
        problems = []
        for name in ("sqa_ratio", "text_only_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                problems.append(f"data.{name}={value}: must be in [0, 1]")
        from vict.data.scienceqa import FORMATS

        if self.sqa_format not in FORMATS:
            problems.append(f"data.sqa_format={self.sqa_format!r}: use one of {list(FORMATS)}")
        if self.scienceqa and not self.sqa_ratio:
            problems.append(f"data.scienceqa={self.scienceqa} is set but data.sqa_ratio is 0: set a ratio, e.g. 0.3")
        has_files = any(getattr(self, n) for n in ("captions", "questions"))
        if self.world and has_files:
            problems.append(
                "data.world and data.captions/data.questions are both set; use data.world for the miniature "
                "world or the annotation paths for real data, not both"
            )
        if not self.world and not has_files and not (self.scienceqa and self.sqa_ratio == 1):
            problems.append(
                "no data: set data.world=DIR (create one with `vict data world --out DIR`), "
                "or data.captions and data.questions, or data.scienceqa with data.sqa_ratio: 1"
            )
        if has_files and not self.images:
            problems.append("data.images is required with data.captions/data.questions (the image directory)")
        unknown = sorted(set(self.ratios) - set(INSTRUCTION_KINDS))
        for kind in unknown:
            hint = difflib.get_close_matches(kind, INSTRUCTION_KINDS, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"valid kinds: {', '.join(INSTRUCTION_KINDS)}"
            problems.append(f"data.ratios has unknown instruction kind '{kind}'; {fix}")
        negative = {k: v for k, v in self.ratios.items() if v < 0}
        if negative:
            problems.append(f"data.ratios must be >= 0, got {negative}")
        if not unknown and not negative and sum(self.ratios.values()) <= 0:
            problems.append("data.ratios sum to 0; give at least one kind a positive weight")
        if not 0.0 <= self.sentence_ratio <= 1.0:
            problems.append(f"data.sentence_ratio={self.sentence_ratio} must be in [0, 1]")
        if self.max_length < 8:
            problems.append(f"data.max_length={self.max_length} is too small; use >= 8 (plus the visual tokens)")
        if self.num_workers < 0:
            problems.append(f"data.num_workers={self.num_workers} must be >= 0")
        if self.max_images is not None and self.max_images <= 0:
            problems.append(f"data.max_images={self.max_images} must be > 0 or null")
        if problems:
            raise ConfigError(problems)

    def normalised_ratios(self) -> dict[str, float]:
        """Ratios over all five kinds, summing to 1 (kinds not listed get 0)."""
        total = sum(self.ratios.values())
        return {kind: self.ratios.get(kind, 0.0) / total for kind in INSTRUCTION_KINDS}


@dataclass
class TrainConfig:
    """Optimisation, schedule, checkpoints and logging."""

    output_dir: str = _help("run directory: checkpoints, metrics.jsonl, loss.png, config", default="runs/vict")
    seed: int = _help("seed of model init, data order, instruction sampling and dropout", default=0)
    max_steps: int | None = _help("optimizer steps to train (overrides epochs when set)", default=None)
    epochs: float | None = _help("passes over the training images (used when max_steps is null)", default=1.0)
    batch_size: int = _help("examples per micro-batch per process", default=8)
    grad_accum: int = _help("micro-batches per optimizer step", default=1)
    lr: float = _help("peak learning rate of the extra queries and the method's parameters", default=1e-4)
    connector_lr: float | None = _help(
        "peak learning rate of the connector (the Q-Former connector's projection; null: same as lr)", default=None
    )
    weight_decay: float = _help("AdamW weight decay (not applied to biases and norms)", default=0.0)
    warmup_steps: int = _help("linear warmup steps before the schedule", default=0)
    schedule: Literal["cosine", "constant"] = _help("learning-rate schedule after warmup", default="cosine")
    max_grad_norm: float | None = _help("gradient clipping norm (null: no clipping)", default=1.0)
    mixed_precision: Literal["no", "bf16", "fp16"] = _help(
        "autocast precision for the forward pass (fp16 needs a GPU)", default="no"
    )
    save_every: int = _help("checkpoint every N optimizer steps (0: only at the end)", default=0)
    keep_last: int = _help("keep the last K step checkpoints (final/ is always kept)", default=2)
    eval_every: int = _help("validation loss every N steps (0: only at the end)", default=0)
    val_batches: int = _help("micro-batches of the validation split per evaluation (0: no validation)", default=4)
    sample_every: int = _help("print a generated sample every N steps (0: only at the end)", default=0)
    sample_count: int = _help("validation images captioned for a generation sample (0: none)", default=2)
    sample_max_new_tokens: int = _help("generation budget of each sample (tokens)", default=32)
    resume: bool = _help("resume from the latest checkpoint in output_dir", default=False)
    init_from: str | None = _help(
        "start from the trainable weights of this checkpoint (a run's final/ or checkpoints/step-N) with a fresh "
        "optimizer and schedule: the next stage of a recipe (null: from the sources)",
        default=None,
    )
    group_by_length: bool = _help("batch examples of similar length together (less padding)", default=True)
    cache_vision_features: bool = _help(
        "compute once per image the features no trainable parameter changes (the frozen vision tower's output "
        "while the extra queries train) and reuse them (same loss; skips image decoding "
        "and the ViT after the first epoch; memory: images x patches x width)",
        default=False,
    )
    vision_cache_max_gb: float = _help("upper bound of the vision feature cache in RAM", default=4.0)
    log_every: int = _help("log loss/lr/throughput to metrics.jsonl every N steps", default=1)
    num_threads: int | None = _help("torch CPU threads (null: torch's default)", default=None)

    def __post_init__(self) -> None:
        problems = []
        if self.max_steps is None and self.epochs is None:
            problems.append("set train.max_steps or train.epochs (both are null)")
        if self.max_steps is not None and self.max_steps <= 0:
            problems.append(f"train.max_steps={self.max_steps} must be > 0 (or null to use epochs)")
        if self.epochs is not None and self.epochs <= 0:
            problems.append(f"train.epochs={self.epochs} must be > 0")
        for name in ("batch_size", "grad_accum", "keep_last", "log_every", "sample_max_new_tokens"):
            if getattr(self, name) <= 0:
                problems.append(f"train.{name}={getattr(self, name)} must be > 0")
        for name in ("warmup_steps", "save_every", "eval_every", "val_batches", "sample_every", "sample_count"):
            if getattr(self, name) < 0:
                problems.append(f"train.{name}={getattr(self, name)} must be >= 0")
        if self.lr <= 0:
            problems.append(f"train.lr={self.lr} must be > 0")
        if self.connector_lr is not None and self.connector_lr <= 0:
            problems.append(f"train.connector_lr={self.connector_lr} must be > 0 or null")
        if self.weight_decay < 0:
            problems.append(f"train.weight_decay={self.weight_decay} must be >= 0")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.append(f"train.max_grad_norm={self.max_grad_norm} must be > 0 or null")
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            problems.append(
                f"train.warmup_steps={self.warmup_steps} must be smaller than train.max_steps={self.max_steps}"
            )
        if self.vision_cache_max_gb <= 0:
            problems.append(f"train.vision_cache_max_gb={self.vision_cache_max_gb} must be > 0")
        if self.num_threads is not None and self.num_threads <= 0:
            problems.append(f"train.num_threads={self.num_threads} must be > 0 or null")
        if problems:
            raise ConfigError(problems)


@dataclass
class VictConfig:
    """The whole run: model, method, connector, data and training settings."""

    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodSpec = _help(
        "the method that modifies the frozen LLM and what it trains: method.type names a registered method "
        "(`vict methods` lists them); the other method.* keys are that method's settings",
        default_factory=MethodSpec,
    )
    connector: ConnectorSpec = _help(
        "how vision enters the LLM: connector.type names a registered connector (empty: the method's default); "
        "the other connector.* keys are its settings",
        default_factory=ConnectorSpec,
    )
    data: DataConfig = field(default_factory=lambda: DataConfig(world="runs/world"))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        problems = []
        # The saved config names the connector explicitly (resolved from the method's default).
        self.connector = self.connector.resolved(self.method)
        if self.train.mixed_precision == "fp16" and self.model.frozen_dtype == "bfloat16":
            problems.append(
                "train.mixed_precision=fp16 with model.frozen_dtype=bfloat16 mixes two half formats; "
                "use mixed_precision=bf16"
            )
        if self.train.cache_vision_features and self.data.bad_input == "skip":
            problems.append(
                "train.cache_vision_features=true needs data.bad_input=fail (a cached batch cannot drop a bad "
                "image); validate the images first or turn the cache off"
            )
        if self.train.eval_every and not self.data.val_split:
            problems.append("train.eval_every is set but data.val_split is null; set a validation split")
        if problems:
            raise ConfigError(problems)


# ----------------------------------------------------------------------------------------------------------------
# Loading, coercion and validation
# ----------------------------------------------------------------------------------------------------------------

_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "method": MethodSpec,
    "connector": ConnectorSpec,
    "data": DataConfig,
    "train": TrainConfig,
}

_SPECS: dict[type, tuple[Any, Any]] = {
    MethodSpec: (get_method, method_names),
    ConnectorSpec: (get_connector, connector_names),
}
"""Sections whose keys depend on their ``type``: the registry lookup and the list of registered names."""


def _all_paths(cls: type = VictConfig, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf field, e.g. ``train.lr`` (a spec section: ``type`` and every registered
    class's settings)."""
    if cls in _SPECS:
        lookup, names = _SPECS[cls]
        out = [f"{prefix}type"]
        for name in names():
            out += [p for p in _all_paths(lookup(name).settings_class, prefix) if p not in out]
        return out
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_all_paths(tp, f"{prefix}{f.name}."))
        else:
            out.append(f"{prefix}{f.name}")
    return out


# Names other trainers use for our keys, so that a typo of a familiar name still gets a useful suggestion.
_ALIASES: dict[str, str] = {
    "learning_rate": "train.lr",
    "connector_learning_rate": "train.connector_lr",
    "projection_lr": "train.connector_lr",
    "gradient_accumulation_steps": "train.grad_accum",
    "grad_accumulation": "train.grad_accum",
    "num_epochs": "train.epochs",
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size",
    "warmup": "train.warmup_steps",
    "lr_scheduler_type": "train.schedule",
    "lora_r": "method.r",
    "lora_alpha": "method.alpha",
    "lora_dropout": "method.dropout",
    "peft": "method",
    "peft_type": "method.type",
    "num_query_tokens": "model.num_extra_queries",
}


def _suggest(key: str, prefix: str, known: list[str]) -> str:
    """A 'did you mean' hint for an unknown key: its siblings, then familiar aliases, then all dotted paths."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    alias = difflib.get_close_matches(key, list(_ALIASES), n=1, cutoff=0.75)
    if alias:
        return f"did you mean '{_ALIASES[alias[0]]}'?"
    everywhere = _all_paths()
    leaf_match = [p for p in everywhere if difflib.get_close_matches(key, [p.rsplit(".", 1)[-1]], cutoff=0.75)]
    if leaf_match:
        return f"did you mean '{leaf_match[0]}'?"
    return f"valid keys here: {', '.join(known)}"


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_describe(typing.get_args(tp)[0])}]"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"dict[{_describe(k)}, {_describe(v)}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ``ValueError`` with a message naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}={value!r} is not a valid {_describe(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else f"choose one of {', '.join(repr(c) for c in choices)}"
        raise ValueError(f"{key}={value!r} is not one of {', '.join(repr(c) for c in choices)}; {fix}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # `x=a` on the command line for a one-element list
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}={value!r} should be a list, e.g. {key}=[a,b]")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"{key}={value!r} should be a mapping, e.g. {key}: {{a: 1}}")
        return {_coerce(k, key_tp, key): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ValueError(f"{key}={value!r} should be true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{key}={value!r} should be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if number.is_integer():
                    return int(number)
        raise ValueError(f"{key}={value!r} should be an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}={value!r} should be a number")
        number = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads `1e-4` as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None and not math.isfinite(number):
            raise ValueError(f"{key}={value!r} is not a finite number; give a finite value, e.g. 1e-4")
        if number is not None:
            return number
        raise ValueError(f"{key}={value!r} should be a number, e.g. 1e-4")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{key}={value!r} should be a string")
    raise ValueError(f"{key}: unsupported field type {tp!r}")


def _build_section(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from ``data``, appending every problem found instead of stopping at the first."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.')} should be a mapping of keys, got {data!r}")
        data = {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            problems.append(f"unknown key '{prefix}{key}'; {_suggest(str(key), prefix, names)}")
            continue
        tp = hints[key]
        if tp in _SPECS:
            kwargs[key] = _build_spec(tp, value, f"{prefix}{key}.", problems)
            continue
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build_section(tp, value, f"{prefix}{key}.", problems)
            continue
        try:
            kwargs[key] = _coerce(value, tp, f"{prefix}{key}")
        except ValueError as err:
            problems.append(str(err))
    try:
        return cls(**kwargs)
    except SettingsError as err:  # every settings dataclass reports its problems as a list
        problems.extend(err.problems)
    # Relationship checks failed: still return an object (defaults where needed) so that other sections and
    # the root can be checked too; the caller raises with everything collected.
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            setattr(obj, f.name, kwargs[f.name])
        elif f.default is not dataclasses.MISSING:
            setattr(obj, f.name, f.default)
        else:
            setattr(obj, f.name, f.default_factory())  # type: ignore[misc]
    return obj


def _build_spec(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    """A ``MethodSpec`` / ``ConnectorSpec`` section: ``type`` picks the registered class, whose settings dataclass
    types and checks the other keys (unknown ones get a did-you-mean among that class's settings)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.')} should be a mapping with a `type` key, got {data!r}")
        return cls()
    data = dict(data)
    name = data.pop("type", cls.__dataclass_fields__["type"].default)
    if not name:
        if data:
            problems.append(
                f"{prefix}type is empty but {prefix.rstrip('.')} settings {sorted(data)} are given; name it"
            )
        return cls()
    lookup, _ = _SPECS[cls]
    try:
        target = lookup(str(name))
    except SettingsError as err:
        problems.extend(err.problems)
        return cls()
    before = len(problems)
    own = {f.name for f in dataclasses.fields(target.settings_class)}
    foreign: dict[str, list[str]] = {}  # keys that belong to another registered type, by that type
    for key in [k for k in data if k not in own]:
        others = [n for n in _SPECS[cls][1]() if key in lookup(n).settings_class.__dataclass_fields__]
        if others:
            foreign.setdefault(others[0], []).append(f"{prefix}{key}")
            del data[key]
    for other, keys in foreign.items():
        problems.append(
            f"{', '.join(keys)}: setting(s) of {prefix}type={other!r}, not of {name!r} (its settings: "
            f"{', '.join(sorted(own)) or 'none'}); remove them, or replace the whole section on the command line: "
            f"'{prefix.rstrip('.')}={{type: {name}}}'"
        )
    settings = _build_section(target.settings_class, data, prefix, problems)
    if len(problems) > before:
        return cls()
    return cls(type=str(name), settings=settings)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> VictConfig:
    """Build and validate a :class:`VictConfig` from nested plain data; raise :class:`ConfigError` listing all problems."""
    problems: list[str] = []
    cfg = _build_section(VictConfig, data, "", problems)
    problems.extend(_check_tiny_kwargs(cfg.model))
    if problems:
        raise ConfigError(problems, source)
    return cfg


def _check_tiny_kwargs(model: ModelConfig) -> list[str]:
    """Bind ``model.tiny`` against ``build_tiny``'s signature once the model package provides it."""
    if not model.tiny:
        return []
    if model.builder != "tiny":
        return [f"model.tiny is set but model.builder={model.builder!r}; remove model.tiny or use builder=tiny"]
    try:
        from vict.models.builders import build_tiny
    except ImportError:  # the model package is optional for validation; the recipe checks again at build time
        return []
    import inspect

    params = inspect.signature(build_tiny).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    problems = []
    for key in model.tiny:
        if key not in params:
            hint = difflib.get_close_matches(key, list(params), n=1)
            fix = f"did you mean 'model.tiny.{hint[0]}'?" if hint else f"build_tiny accepts: {', '.join(params)}"
            problems.append(f"unknown key 'model.tiny.{key}' (not a build_tiny argument); {fix}")
    return problems


def parse_override_value(text: str) -> Any:
    """Parse the value side of ``key=value`` like YAML: ``3`` -> 3, ``1e-4`` -> 1e-4, ``true``, ``null``, ``[a,b]``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to nested config data (a new dict; ``data`` is not modified).

    Unknown keys are not rejected here: validation reports them together with every other problem.
    """
    import copy

    out = copy.deepcopy(data) if data else {}
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r} is not key=value; write e.g. train.max_steps=100")
            continue
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            problems.append(f"override {item!r} has an empty key part; write e.g. train.lr=1e-4")
            continue
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"override {item!r}: '{'.'.join(parts[: depth + 1])}' is a value, not a section")
                break
            node = child
        else:
            node[parts[-1]] = parse_override_value(raw)
    if problems:
        raise ConfigError(problems, "command-line overrides")
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> VictConfig:
    """Load a YAML config, apply ``key.sub=value`` overrides and validate.

    Args:
        path: YAML file (``None``: start from the defaults).
        overrides: e.g. ``["train.max_steps=50", "method.type=llama_adapter"]``.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: every problem found, each with the key, value and fix.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; shipped configs are under configs/")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError([f"invalid YAML: {err}"], source) from err
        if not isinstance(data, dict):
            raise ConfigError([f"top level should be a mapping with sections {list(_SECTIONS)}"], source)
    data = apply_overrides(data, list(overrides or []))
    if overrides:
        source += f" + {len(overrides)} override(s)"
    return config_from_dict(data, source)


def load_data_config(path: str | Path) -> DataConfig:
    """Only the ``data`` section of a saved run config (what inference needs: the prompt templates, the chat
    template switch, the maximum length), so that checkpoints whose other sections an older or newer ``vict``
    wrote still load for inference."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError([f"invalid YAML: {err}"], str(path)) from err
    problems: list[str] = []
    section = _build_section(DataConfig, data.get("data") if isinstance(data, dict) else None, "data.", problems)
    if problems:
        raise ConfigError(problems, str(path))
    return section


def config_to_dict(cfg: Any) -> Any:
    """Plain nested data of a config dataclass (YAML/JSON serialisable); spec sections are flat
    (``{"type": "lora", "r": 8, ...}``)."""
    if isinstance(cfg, MethodSpec | ConnectorSpec):
        return cfg.to_dict()
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [config_to_dict(v) for v in cfg]
    return cfg


def save_config(cfg: VictConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (round-trips through :func:`load_config`)."""
    text = "# resolved vict config (all defaults filled in); rerun with: vict train THIS_FILE\n"
    text += yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    Path(path).write_text(text)


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""A Hugging Face hub id (``org/name``), as opposed to a local path."""
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def is_hub_id(source: str | None) -> bool:
    """Whether ``source`` names a hub repository rather than a local folder (which it is whenever it exists)."""
    return bool(source) and not Path(str(source)).expanduser().exists() and bool(HUB_ID.match(str(source)))


def remote_sources(cfg: VictConfig) -> list[str]:
    """Model sources that are hub ids (``--check-paths`` cannot check them offline; they download at train time)."""
    if cfg.model.builder != "hf":
        return []
    names = ["llm_source"] + (["vpg_source"] if cfg.model.vpg_format == "hf" else [])
    return [f"model.{n}={getattr(cfg.model, n)}" for n in names if is_hub_id(getattr(cfg.model, n))]


def _source_problems(key: str, source: str | None, tokenizer: bool) -> list[str]:
    """What a local model folder lacks (config.json, weights, a tokenizer for an LLM); nothing for a hub id."""
    if not source or is_hub_id(source):
        return []
    root = Path(str(source)).expanduser()
    if not root.exists():
        return [f"{key}={source}: no such folder (and not a hub id like org/name); fix the path"]
    if not root.is_dir():
        return [f"{key}={source}: a file, not a model folder (config.json + weights)"]
    missing = []
    if not (root / "config.json").is_file():
        missing.append("config.json")
    if not any((root / f).is_file() for f in WEIGHT_FILES):
        missing.append(f"weights ({' or '.join(WEIGHT_FILES[::2])})")
    if tokenizer and not any((root / f).is_file() for f in TOKENIZER_FILES):
        missing.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if missing:
        return [f"{key}={source}: the folder has no {', no '.join(missing)}; point it at a saved model folder"]
    return []


def check_paths(cfg: VictConfig) -> list[str]:
    """Problems with input paths that must exist before training (the world dir, annotation files, sources)."""
    problems = []
    d = cfg.data
    splits = [d.train_split] + ([d.val_split] if d.val_split else [])
    if d.world:
        root = Path(d.world)
        if not (root / "annotations").is_dir():
            problems.append(
                f"data.world={d.world}: no annotations/ folder there; create the world with "
                f"`vict data world --out {d.world}`"
            )
    for name in ("captions", "questions", "images"):
        value = getattr(d, name)
        if not value:
            continue
        for split in splits:
            p = Path(value.replace("{split}", split))
            if not p.exists():
                problems.append(f"data.{name}: {p} does not exist (split {split!r}); fix the path")
    if d.vg_image_data and not Path(d.vg_image_data).is_file():
        problems.append(f"data.vg_image_data: {d.vg_image_data} does not exist")
    if d.templates and not Path(d.templates).is_file():
        problems.append(f"data.templates: {d.templates} does not exist")
    if cfg.model.builder == "hf":
        if cfg.model.vpg_format == "lavis":
            if not Path(str(cfg.model.vpg_source)).is_file():
                problems.append(f"model.vpg_source: LAVIS checkpoint {cfg.model.vpg_source} does not exist")
        else:
            problems += _source_problems("model.vpg_source", cfg.model.vpg_source, tokenizer=False)
        problems += _source_problems("model.llm_source", cfg.model.llm_source, tokenizer=True)
    if cfg.train.init_from and not (Path(cfg.train.init_from) / "vict_trainable.safetensors").is_file():
        problems.append(
            f"train.init_from={cfg.train.init_from}: not a model checkpoint (no vict_trainable.safetensors); "
            "give a run's final/ or checkpoints/step-N folder"
        )
    init_weights = getattr(cfg.connector.settings, "init_weights", None)
    if init_weights and not Path(init_weights).is_file():
        problems.append(f"connector.init_weights={init_weights} does not exist")
    return problems


def config_reference(cls: type = VictConfig, prefix: str = "") -> str:
    """Every config key with its type, default and help, one per line (printed by ``--help``); a spec section
    lists the settings of every registered method or connector under its ``type``."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if tp in _SPECS:
            lookup, names = _SPECS[tp]
            lines.append(f"{prefix}{f.name}:  ({f.metadata['help']})")
            default = config_to_dict(f.default_factory())["type"] or "(the method's default)"  # type: ignore[misc]
            lines.append(f"  {prefix}{f.name}.type (one of {', '.join(names())}; default {default})")
            for name in names():
                target = lookup(name)
                lines.append(f"  {prefix}{f.name}.type={name}: {target.description}")
                body = config_reference(target.settings_class, f"{prefix}{f.name}.")
                lines += ["  " + line for line in body.splitlines()] if body else []
            continue
        if dataclasses.is_dataclass(tp):
            lines.append(f"{prefix}{f.name}:  ({(tp.__doc__ or '').strip().splitlines()[0]})")
            lines.append(config_reference(tp, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {prefix}{f.name} ({_describe(tp)}, default {default!r})\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
