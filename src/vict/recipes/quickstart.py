"""``vict quickstart``: the paper in miniature, offline, through the same code paths as a GPU run on COCO + GQA.

Stages (each printed with its name and the estimated time left):
1. ``world``: generate the miniature world (COCO/GQA formats) into ``DIR/world``;
2. ``zoo``: the pretrained miniature model zoo (tiny BLIP-2 with its OPT, tiny LLaMA): the one shipped with the
   package, SHA-256 checked (``vict.zoo.shipped``), or for a preset that does not ship a build cached in ``DIR/zoo``;
3. ``train vict-<method>`` for each of the preset's methods (LoRA, LLaMA-Adapter, VPGTrans, VPGTrans + LoRA): the
   target LLaMA with the zoo BLIP-2's VPG, the connector and the method, with the settings of the method's
   ``quickstart_recipe`` (``vict.recipes.train``); the recipes with ``transfer`` start the projection from the
   merged converter init (fitted once), and after the one with ``speedup`` (``vpgtrans``) ``train vpg-scratch``
   trains the from-scratch VPG that VPGTrans's speed-up is measured against;
4. ``eval``: the source BLIP-2 (``Blip2Engine``) and every VICT model (``VictEngine``) on the test split, captioning
   and GQA in every context setting of ``vict.eval.splits.DEFAULT_SETTINGS``, overall and by question type
   (``vict.recipes.evaluate``);
5. ``text retention``: each VICT model's LLM on the test split's plain text, perplexity with the method's delta off
   and on (``vict.eval.text_retention``);
6. ``probe``: an attentive probe (and a linear one) of the frozen VPG's query outputs, fitted on the train split,
   scored on the test split for each object's colour, shape, size and position (``vict.zoo.probe``);
7. ``similarity``: the source Q-Former tokens against the source LM's and the target LM's vocabularies;
8. ``report``: ``DIR/report.json``, ``DIR/report.md`` and the plots (``vict.recipes.quickstart_report``), and the
   tables printed.

``--seeds 0,1,2`` runs all of it once per seed into ``DIR/seed-<k>/`` and writes ``DIR/report.json`` and
``DIR/report.md`` with the mean and sample standard deviation over the seeds (``quickstart_seeds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vict.recipes.quickstart_report import (
    SOURCE_ROW,
    aggregate_seeds,
    caption_row,
    distractor_drop,
    gqa_by_type_row,
    gqa_row,
    gqa_settings,
    gqa_type_counts,
    markdown,
    plot_gqa,
)
from vict.settings import help_field, parse_like

EPILOG = """examples:
  vict quickstart --preset fast                 # 2 to 3 minutes on 2 CPU cores (CI uses this)
  vict quickstart                               # the default preset: 6.5-9.3 minutes on 2 idle CPU cores, clearer effects
  vict quickstart --preset scienceqa            # VICT, LaVIN and VLoRA trained with and evaluated on ScienceQA-mini
  vict quickstart --out runs/qs --seed 1        # another seed (of the world and the trainings; the zoo is shipped)
  vict quickstart --preset fast --seeds 0,1,2   # three seeds into DIR/seed-<k>/, then mean ± std in DIR/report.md
  vict quickstart --set world_images=3000 --set train_steps=1200   # a preset with settings changed

outputs: DIR/report.md and DIR/report.json (captioning, gqa, gqa_by_type, gqa_type_counts, gqa_distractor_drop,
baselines, text_retention, similarity, trainable_parameters, timings, config, zoo_quality; transfer with the
vpgtrans row; scienceqa, scienceqa_baselines, scienceqa_failed with the scienceqa preset), DIR/similarity.png,
DIR/gqa_context.png, DIR/runs/<row>/ (checkpoints), DIR/eval/ (predictions).
A rerun with the same seed gives the same numbers.
"""


@dataclass(frozen=True)
class QuickstartPreset:
    """Everything a quickstart run decides, apart from the seed (per-method settings and learning rates come from
    each method's ``quickstart_recipe``; ``method_lr`` replaces a recipe's rate in one preset)."""

    world_images: int = help_field("images of the generated world (80% train, 10% val, 10% test)")
    zoo: str = help_field("zoo preset (vict.zoo.presets)")
    train_steps: int = help_field("VICT optimiser steps per method")
    batch_size: int = help_field("examples per training step")
    connector_lr: float = help_field("peak learning rate of the connector (the projection), every row")
    num_extra_queries: int = help_field("trainable queries appended to the BLIP-2's originals")
    fast_caption_metrics: bool = help_field(
        "skip METEOR and SPICE (their JVMs cost ~20 s each); they are then reported as unavailable"
    )
    similarity_images: int = help_field("test images of the Q-Former similarity analysis")
    eta_s: dict[str, float] = help_field(
        "nominal seconds per stage on 2 busy CPU cores, for the time-left estimate ('train' is per method)"
    )
    methods: tuple[str, ...] = help_field(
        "the rows trained and evaluated: a method (row vict-<method>) or a variant a method's recipe declares "
        "(row named after it, e.g. lavin)",
        default=("lora", "llama_adapter", "vpgtrans", "vpgtrans_lora", "vlora"),
    )
    method_lr: dict[str, float] = help_field(
        "learning rates that replace the quickstart recipe's rate (its 'lr', not the connector's) of the named rows "
        "(a method or variant in methods) in this preset; --set method_lr=lora:3e-3 changes one and keeps the others",
        default_factory=dict,
    )
    sqa_ratio: float = help_field(
        "fraction of every row's training examples drawn from ScienceQA-mini's train problems; > 0 also evaluates "
        "every row on its test problems (0: neither)",
        default=0.0,
    )
    sqa_format: str = help_field(
        "ScienceQA prompt format of the training problems and the evaluation (vict.data.scienceqa.FORMATS)",
        default="QCM-A",
    )
    gqa_text: bool = help_field(
        "also ask GQA-mini with the gold caption and no image (the `text` setting, vict.eval.splits): what each row "
        "answers text only, LaVIN's kept skill (the plain BLIP-2 cannot: its cell is empty)",
        default=False,
    )
    transfer_eval_every: int = help_field(
        "validation-loss interval (steps) of the vpgtrans row and its from-scratch baseline: the points of the "
        "transfer curves and the speed-up",
        default=50,
    )
    train_threads: int = help_field(
        "torch.set_num_threads of the VICT trainings (the zoo keeps its own, fixed for reproducibility; 2 threads "
        "ran ~2x faster than 1 on an idle 2-core machine)",
        default=2,
    )

    @property
    def rows(self) -> tuple[str, ...]:
        """Report rows: the source BLIP-2, then one per method."""
        return (SOURCE_ROW, *(row_name(m) for m in self.methods))

    def stage_eta_s(self) -> dict[str, float]:
        """Nominal seconds of every stage, in order (one ``train vict-<method>`` stage per method)."""
        eta = dict(self.eta_s)
        trains = {}
        for m in self.methods:
            trains[f"train {row_name(m)}"] = eta["train"]
            if m == "vpgtrans":  # its from-scratch baseline trains right after it
                trains[TRANSFER_STAGE] = eta["train"]
        return {"world": eta["world"], "zoo": eta["zoo"], **trains, **{k: eta[k] for k in AFTER_TRAINING}}


AFTER_TRAINING: tuple[str, ...] = ("eval", "text retention", "probe", "similarity", "report")
SCRATCH_ROW = "vpg-scratch"
TRANSFER_STAGE = f"train {SCRATCH_ROW}"
"""The from-scratch baseline of VPGTrans's speed-up (a training, not a report row)."""

PRESETS: dict[str, QuickstartPreset] = {
    "fast": QuickstartPreset(
        world_images=300,
        zoo="default",
        train_steps=200,
        batch_size=24,  # 16: VICT-LoRA +14.6 over question only (mean of seeds 0-2), 24: +17.4 (docs/tuning.md)
        connector_lr=1e-2,
        num_extra_queries=8,
        fast_caption_metrics=True,
        similarity_images=20,
        transfer_eval_every=20,
        eta_s={
            "world": 3,
            "zoo": 2,
            "train": 30,
            "eval": 15,
            "text retention": 2,
            "probe": 10,
            "similarity": 3,
            "report": 1,
        },
    ),
    "default": QuickstartPreset(
        # 2000 images (a 200-image test split) and 1200 steps: VICT-LoRA's seed std 1.1 without context, against
        # 6.5 with 1000 images and 800 steps (docs/tuning.md)
        world_images=2000,
        zoo="default",
        train_steps=1200,
        batch_size=16,
        connector_lr=1e-2,
        # the LoRA rows' recipe rate (5e-3) suits the fast preset's 200 steps; over 1200 steps 3e-3 gave VICT-LoRA
        # 66.1 without context (mean of seeds 0-2) against 62.3 (docs/tuning.md)
        method_lr={"lora": 3e-3, "vpgtrans_lora": 3e-3},
        methods=("lora", "llama_adapter", "llama_adapter_v2", "vpgtrans", "vpgtrans_lora", "vlora"),
        num_extra_queries=8,
        fast_caption_metrics=False,
        similarity_images=50,
        eta_s={
            "world": 6,
            "zoo": 2,
            "train": 135,
            "eval": 100,
            "text retention": 5,
            "probe": 15,
            "similarity": 5,
            "report": 2,
        },
    ),
}


PRESETS["scienceqa"] = dataclasses.replace(
    PRESETS["default"],
    world_images=1000,  # ScienceQA-mini: 1200 train, 150 val, 149 test problems
    train_steps=800,
    method_lr={},  # the recipes' rates, with which its numbers were measured
    eta_s={**PRESETS["default"].eta_s, "world": 4, "train": 90, "eval": 50},
    methods=("lora", "llama_adapter", "mm_adapter", "lavin", "vlora"),
    sqa_ratio=0.2,
    gqa_text=True,
)
"""VICT, LaVIN and VLoRA on ScienceQA-mini: every row trains with 20% ScienceQA problems and is evaluated on them;
``vict-mm_adapter`` is VICT's VPG feeding LaVIN's adapters, ``lavin`` LaVIN itself (its connector, text-only rows)."""


PRESET_LIMITS: dict[str, tuple[float, float | None]] = {
    "world_images": (10, None),
    "train_steps": (1, None),
    "batch_size": (1, None),
    "num_extra_queries": (0, None),
    "similarity_images": (1, None),
    "sqa_ratio": (0, 0.99),
    "transfer_eval_every": (1, None),
    "train_threads": (1, None),
}
"""Inclusive bounds of the numeric settings ``--set`` may change (and ``connector_lr`` must be above 0)."""


def resolve_preset(preset: str | QuickstartPreset) -> tuple[QuickstartPreset, str]:
    """``(preset, its name)`` for a preset name (a clear error lists the known ones) or a ``QuickstartPreset``
    (named ``custom``)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"--preset {preset!r}: use one of {sorted(PRESETS)}")
        return PRESETS[preset], preset
    return preset, "custom"


def with_overrides(preset: QuickstartPreset, overrides: Sequence[str]) -> QuickstartPreset:
    """``preset`` with ``KEY=VALUE`` settings applied (``vict quickstart --set``), e.g. ``world_images=3000``,
    ``train_steps=1200`` or ``methods=lora,llama_adapter``: each value read as the field's type (``methods``
    comma-separated; ``method_lr`` as ``row:rate,...`` merged over the preset's, each row among ``methods``), any
    field but ``eta_s``. An unknown key (with a did-you-mean hint), a value of the wrong type or out of range, a
    repeated key or a malformed item is a ``ValueError`` naming it; nothing is applied then."""
    from vict.data.scienceqa import FORMATS

    fields = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name != "eta_s"}
    changes: dict[str, Any] = {}
    given: dict[str, float] = {}
    rates_item = ""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. world_images=3000")
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"--set {item!r}: unknown quickstart setting {key!r}{hint}; known: {', '.join(fields)}")
        if key in changes:
            raise ValueError(f"--set {item!r}: {key} is set twice")
        old = fields[key]
        if key == "method_lr":
            given, rates_item = _method_rates(item, raw), item
            value = {**old, **given}
        elif isinstance(old, tuple):
            value: Any = tuple(part.strip() for part in raw.split(",") if part.strip())
            if not value:
                raise ValueError(f"--set {item!r}: {key} takes comma-separated names, e.g. {key}={','.join(old)}")
        else:
            value = parse_like(old, raw)
            if value is None:
                kind = {bool: "true or false", int: "an integer", float: "a number"}.get(type(old), "a string")
                raise ValueError(f"--set {item!r}: {key} takes {kind} (it is {old!r}), got {raw!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"--set {item!r}: {key} takes a finite number, got {raw!r}")
        if key == "connector_lr" and value <= 0:
            raise ValueError(f"--set {item!r}: connector_lr must be > 0")
        low, high = PRESET_LIMITS.get(key, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"--set {item!r}: {key} must be {bounds}")
        if key == "sqa_format" and value not in FORMATS:
            raise ValueError(f"--set {item!r}: sqa_format must be one of {', '.join(FORMATS)}")
        changes[key] = value
    result = dataclasses.replace(preset, **changes)
    # only the rates given here must name rows: the preset's own may name rows that --set methods dropped
    unknown = sorted(set(given) - set(result.methods))
    if unknown:
        raise ValueError(
            f"--set {rates_item!r}: method_lr names {', '.join(unknown)}, not among the rows' methods "
            f"({', '.join(result.methods)}); drop them or add them to methods"
        )
    return result


def _method_rates(item: str, raw: str) -> dict[str, float]:
    """``lora:3e-3,vpgtrans_lora:2e-3`` -> ``{"lora": 0.003, "vpgtrans_lora": 0.002}`` (each rate finite, > 0)."""
    rates: dict[str, float] = {}
    for part in (p.strip() for p in raw.split(",")):
        name, sep, rate = (x.strip() for x in part.partition(":"))
        value = parse_like(1.0, rate) if sep and name else None
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"--set {item!r}: method_lr takes row:rate pairs with rates > 0, e.g. method_lr=lora:3e-3,vlora:5e-3"
            )
        rates[name] = value
    return rates


class StageClock:
    """Names each stage, times it and estimates the time left from the nominal durations, rescaled by how fast
    the finished stages ran against their nominal times."""

    def __init__(self, eta_s: dict[str, float], printer: Callable[[str], None] = print) -> None:
        self.eta_s, self.printer = dict(eta_s), printer
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def left(self, after: str | None) -> float:
        names = list(self.eta_s)
        remaining = names[names.index(after) + 1 :] if after else names
        # Rescale by the finished stages long enough to measure the machine's speed (a 2 s stage is noise).
        done = [n for n in self.timings if n in self.eta_s and self.eta_s[n] >= 10]
        nominal_done = sum(self.eta_s[n] for n in done)
        speed = sum(self.timings[n] for n in done) / nominal_done if nominal_done else 1.0
        return speed * sum(self.eta_s[n] for n in remaining)

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        k = list(self.eta_s).index(name) + 1
        self.printer(
            f"[{k}/{len(self.eta_s)} {name}] started; estimated time left ~{self.left(None if k == 1 else list(self.eta_s)[k - 2]):.0f}s"
        )
        t = time.perf_counter()
        out = fn()
        self.timings[name] = round(time.perf_counter() - t, 2)
        self.printer(
            f"[{k}/{len(self.eta_s)} {name}] done in {self.timings[name]:.0f}s; estimated time left ~{self.left(name):.0f}s"
        )
        return out

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self._start, 2)


def train_config(
    preset: QuickstartPreset,
    method: str,
    world: Path,
    zoo: Any,
    out: Path,
    seed: int,
    init_weights: Path | None = None,
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The VICT training config (a ``vict.config`` dict) of one row: the zoo's BLIP-2 as frozen VPG, the
    zoo's LLaMA as target LM, the method's settings and learning rate from its ``quickstart_recipe`` (or the given
    ``recipe``, e.g. a variant's; it may also set ``num_extra_queries``, ``connector_lr``, ``connector`` and
    ``text_only_ratio``); ``init_weights``: the projection's start (VPGTrans's merged projector)."""
    from vict.data.prompts import MINIATURE_FROZEN_LLM_TEMPLATES_PATH, MINIATURE_TEMPLATES_PATH

    recipe = method_recipe(method, zoo) if recipe is None else recipe
    connector = dict(recipe.get("connector") or {})
    if init_weights:
        connector = {"type": "qformer_tokens", "init_weights": str(init_weights)}
    templates = MINIATURE_FROZEN_LLM_TEMPLATES_PATH if recipe.get("frozen_llm") else MINIATURE_TEMPLATES_PATH
    return {
        "model": {
            "builder": "hf",
            "vpg_source": str(zoo.blip2_dir),
            "llm_source": str(zoo.target_lm_dir),
            "num_extra_queries": recipe.get("num_extra_queries", preset.num_extra_queries),
            "frozen_dtype": "float32",
        },
        "method": {"type": method, **recipe["settings"]},
        **({"connector": connector} if connector else {}),
        # prompts ending like the zoo LMs' own question-answer text (the file says why; docs/tuning.md measures it)
        "data": {
            "world": str(world),
            "train_split": "train",
            "val_split": "val",
            # a ScienceQA problem (options, hint, solution) is longer than VICT's instructions
            "max_length": SQA_MAX_LENGTH if preset.sqa_ratio else 128,
            "templates": str(templates),
            **({"text_only_ratio": recipe["text_only_ratio"]} if recipe.get("text_only_ratio") else {}),
            **({"sqa_ratio": preset.sqa_ratio, "sqa_format": preset.sqa_format} if preset.sqa_ratio else {}),
        },
        "train": {
            "output_dir": str(out),
            "seed": seed,
            "max_steps": preset.train_steps,
            "batch_size": preset.batch_size,
            "lr": recipe["lr"],
            "connector_lr": recipe.get("connector_lr", preset.connector_lr),
            "warmup_steps": max(1, preset.train_steps // 20),
            "schedule": "cosine",
            "save_every": 0,
            # the speed-up row draws validation curves (VPGTrans's speed-up); the others validate at the end
            "eval_every": preset.transfer_eval_every if recipe.get("speedup") else 0,
            "val_batches": 4 if recipe.get("speedup") else 2,
            "sample_every": 0,
            "sample_count": 0,
            "log_every": 10,
            "num_threads": preset.train_threads,
            # the vision tower is frozen: its outputs are computed once per image (same losses, measured)
            "cache_vision_features": True,
        },
    }


SQA_MAX_LENGTH = 192
"""Training sequence length of presets with ScienceQA: its longest miniature problem, with the solution before the
letter (QCM-EA) and the visual tokens, is ~160 tokens."""

UNTUNED_ROW = "target-lm (no tuning)"
"""ScienceQA-mini row of the target LM with no tuning (a VisionLLM with method none, nothing trained): its answers
to the text-only problems are the target LM's own; its image rows see an untrained projection."""


def untuned_model(zoo: Any, seed: int) -> Any:
    """The zoo's target LM untouched in a ``VisionLLM``: the zoo's VPG, an untrained projection, method ``none``."""
    from vict.models.builders import build_vision_llm

    return build_vision_llm(zoo.blip2_dir, zoo.target_lm_dir, method="none", num_extra_queries=0, seed=seed)


def scienceqa_tables(reports: dict[str, Any], world: Path) -> dict[str, Any]:
    """``scienceqa`` (row -> official category -> accuracy %), ``scienceqa_failed`` (row -> failed extractions)
    and ``scienceqa_baselines`` (random choice, question only; the world's ``summary.json``, in %)."""
    table, failed = {}, {}
    for row in sorted(reports, key=lambda r: r == UNTUNED_ROW):  # the untuned LM last
        sqa = reports[row].get("scienceqa")
        if sqa is None:
            continue
        table[row] = {
            c: (None if v["accuracy"] is None else round(v["accuracy"], 2)) for c, v in sqa["categories"].items()
        }
        failed[row] = sqa["failed"]
    blind = json.loads((world / "summary.json").read_text())["scienceqa"]["blind_baselines"]
    baselines = {
        name: {c: (None if v is None else round(100 * v, 2)) for c, v in blind[key].items()}
        for name, key in (("random_choice", "random_choice_accuracy"), ("question_only", "question_only_accuracy"))
    }
    return {"scienceqa": table, "scienceqa_failed": failed, "scienceqa_baselines": baselines}


def zoo_caption_quality(quality: dict[str, Any]) -> dict[str, Any]:
    """The zoo's held-out caption quality as ``report.json`` states caption scores: CIDEr on pycocoevalcap's 0-1
    scale (the zoo's ``zoo.json`` keeps it x100, as it was built)."""
    return {
        stage: {**q, "cider": None if q.get("cider") is None else round(q["cider"] / 100.0, 4)}
        if isinstance(q, dict)
        else q
        for stage, q in quality.items()
    }


def row_name(key: str) -> str:
    """The report row of a preset entry: ``vict-<key>`` for a method and for a variant named after its method
    (``llama_adapter_v2``: VICT's VPG with another setting of the method), the variant's own name otherwise
    (``lavin``: another system)."""
    from vict.registry import method_names

    names = method_names()
    return f"vict-{key}" if key in names or any(key.startswith(f"{m}_") for m in names) else key


def row_method(key: str, zoo: Any, method_lr: Mapping[str, float] | None = None) -> tuple[str, dict[str, Any]]:
    """``(method, recipe)`` of a preset entry: a registered method with its ``quickstart_recipe``, or a variant a
    method's recipe declares under ``variants`` (its keys override the method's recipe); a rate in ``method_lr``
    under ``key`` (the preset's) replaces the recipe's ``lr``."""
    from vict.registry import method_names

    if method_lr and key in method_lr:
        method, recipe = row_method(key, zoo)
        return method, {**recipe, "lr": method_lr[key]}
    if key in method_names():
        return key, method_recipe(key, zoo)
    for method in method_names():
        try:
            recipe = method_recipe(method, zoo)
        except ValueError:
            continue
        variants = recipe.pop("variants", {})
        if key in variants:
            return method, {**recipe, **variants[key]}
    raise ValueError(f"quickstart row {key!r} is neither a method with a quickstart recipe nor a declared variant")


def method_recipe(method: str, zoo: Any) -> dict[str, Any]:
    """The method's ``quickstart_recipe`` for the zoo's target LM (a clear error when it has none)."""
    from vict.registry import get_method

    llm_config = json.loads((Path(zoo.target_lm_dir) / "config.json").read_text())
    recipe = get_method(method).quickstart_recipe(llm_config)
    if recipe is None:
        raise ValueError(
            f"method {method!r} has no quickstart recipe (Method.quickstart_recipe); drop it from methods"
        )
    return dict(recipe)


def heldout_texts(world: Path, split: str = "test") -> list[str]:
    """The held-out text of text retention: the images of ``split`` as documents of the form the zoo's LMs were
    pretrained on (``vict.zoo.corpus.world_documents``; the world's images are never in the zoo's stream)."""
    from vict.zoo.corpus import world_documents
    from vict.zoo.world_text import load_split

    return world_documents(load_split(world, split))


def blind_baselines(world: Path, split: str = "test") -> dict[str, float]:
    """Majority-answer and question-only accuracy (percent), fitted on train, scored on ``split``."""
    from vict.data.world.baselines import majority_answer_accuracy, question_only_accuracy
    from vict.data.world.layout import world_files

    train = json.loads(world_files(world, "train")["questions"].read_text())
    test = json.loads(world_files(world, split)["questions"].read_text())
    answer, majority = majority_answer_accuracy(train, test)
    question_only = question_only_accuracy(train, test)
    return {
        "majority": round(100 * majority, 2),
        "majority_answer": answer,
        "question_only": round(100 * question_only["best"], 2),
    }


def quickstart(
    out: Path,
    preset: str | QuickstartPreset = "default",
    seed: int = 0,
    printer: Callable[[str], None] = print,
    zoo_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every stage into ``out`` and return the report (also written to ``out/report.json``).

    Args:
        out: output folder; ``world/``, ``runs/`` and ``eval/`` in it are regenerated, ``zoo/`` is a cache.
        preset: ``"fast"``, ``"default"`` or a ``QuickstartPreset`` (tests use smaller ones).
        seed: seed of the world, the zoo and both trainings.
        printer: receives every progress line.
        zoo_dir: a finished zoo build to use instead of the preset's zoo (``vict zoo build --set ...``; checked by
            ``vict.zoo.open_zoo``).
        overrides: ``KEY=VALUE`` changes to the preset (``with_overrides``; ``vict quickstart --set``), recorded in
            the report's ``config.overrides``.
    """
    from vict.config import config_from_dict
    from vict.data.world import generate_world
    from vict.eval.analyze_cli import analyze_series
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.eval.captioning import CAPTION_METRICS, FAST_CAPTION_METRICS
    from vict.eval.similarity import plot_similarity_histogram
    from vict.eval.text_retention import text_retention
    from vict.inference import VictEngine
    from vict.inference.blip2 import Blip2Engine
    from vict.recipes.evaluate import auto_threads, evaluate_model
    from vict.recipes.train import train
    from vict.recipes.transfer import prepare_merged_projector, scratch_config, transfer_summary
    from vict.transfer.texts import world_texts
    from vict.zoo import open_zoo, resolve_zoo
    from vict.zoo.probe import probe_vpg

    p, preset_name = resolve_preset(preset)
    p = with_overrides(p, overrides)
    out = Path(out)
    for product in ("runs", "eval"):  # outputs of an earlier run in the same folder: regenerated below
        shutil.rmtree(out / product, ignore_errors=True)
    world = out / "world"
    clock = StageClock(p.stage_eta_s(), printer)
    rows = p.rows
    settings = (*gqa_settings(), *(("text",) if p.gqa_text else ()))

    def make_world() -> None:
        generate_world(world, images=p.world_images, seed=seed, overwrite=True)

    clock.run("world", make_world)
    zoo = clock.run(
        "zoo", lambda: open_zoo(zoo_dir) if zoo_dir is not None else resolve_zoo(p.zoo, out / "zoo", progress=printer)
    )

    finals: dict[str, Path] = {}
    configs: dict[str, dict[str, Any]] = {}
    transfer: dict[str, Any] = {}

    def train_row(row: str, cfg_dict: dict[str, Any]) -> Path:
        configs[row] = cfg_dict
        result = train(config_from_dict(cfg_dict, source=f"quickstart {row}"))
        if result.final_dir is None:
            raise RuntimeError(
                f"training of {cfg_dict['train']['output_dir']} stopped before the end ({result.stopped_by})"
            )
        return result.final_dir

    merged: list[Path] = []  # the merged projector, fitted once for every transfer row

    def merged_projector() -> Path:
        if not merged:  # VPGTrans: the projector starts as word converter o the BLIP-2's projector
            init, meta = prepare_merged_projector(
                zoo.blip2_dir,
                zoo.source_lm_dir,
                zoo.target_lm_dir,
                world_texts(world),
                out / "transfer",
                seed,
                texts_source="the world's train captions",
            )
            transfer["converter"] = {k: meta[k] for k in ("texts", "fit", "merge")}
            merged.append(init)
        return merged[0]

    for key in p.methods:
        row = row_name(key)
        method, recipe = row_method(key, zoo, p.method_lr)

        def run_training(method: str = method, row: str = row, recipe: dict[str, Any] = recipe) -> Path:
            init = merged_projector() if recipe.get("transfer") else None
            cfg = train_config(p, method, world, zoo, out / "runs" / row, seed, init_weights=init, recipe=recipe)
            return train_row(row, cfg)

        finals[row] = clock.run(f"train {row}", run_training)
        if recipe.get("speedup"):

            def run_scratch(row: str = row) -> None:
                train_row(SCRATCH_ROW, scratch_config(configs[row], out / "runs" / SCRATCH_ROW))
                transfer.update(
                    transfer_summary(out / "runs" / row, out / "runs" / SCRATCH_ROW, plot=out / "transfer.png")
                )

            clock.run(TRANSFER_STAGE, run_scratch)

    metrics = FAST_CAPTION_METRICS if p.fast_caption_metrics else CAPTION_METRICS

    sqa_problems = world / "scienceqa" / "problems.json"
    sqa_tasks = ("scienceqa",) if p.sqa_ratio else ()

    def evaluate_all() -> tuple[dict[str, Any], dict[str, Any]]:
        reports, engines = {}, {}
        blip2 = Blip2Baseline.from_pretrained(zoo.blip2_dir)
        if sqa_tasks:  # the target LM with no tuning: its text-only answers are the bar the tuned rows must keep
            reports[UNTUNED_ROW] = evaluate_model(
                untuned_model(zoo, seed),
                tasks=sqa_tasks,
                out_dir=out / "eval",
                scienceqa=sqa_problems,
                scienceqa_format=p.sqa_format,
                name=UNTUNED_ROW,
            )
        for row in rows:
            engines[row] = (
                Blip2Engine(blip2, name=row)
                if row == SOURCE_ROW
                else VictEngine.from_checkpoint(finals[row], name=row)
            )
            reports[row] = evaluate_model(
                engines[row],
                world,
                split="test",
                out_dir=out / "eval",
                caption_metrics=metrics,
                settings=settings,
                sentence=False,  # not in the paper's tables; `vict eval` reports it
                tasks=("caption", "gqa", *sqa_tasks),
                scienceqa=sqa_problems if sqa_tasks else None,
                scienceqa_format=p.sqa_format,
            )
        return reports, engines

    reports, engines = clock.run("eval", evaluate_all)

    def retention() -> dict[str, dict[str, float]]:
        # The test split as text in the form the zoo pretrained its LMs on. No row for the source BLIP-2: it has no
        # delta to switch off (its LM is either frozen or tuned by captioning, with no pretrained copy kept).
        texts = heldout_texts(world)
        kept, before = {}, torch.get_num_threads()
        try:
            for row in rows[1:]:
                # the evaluation's thread policy: one thread for a tiny model (measured 12x faster than two here)
                torch.set_num_threads(auto_threads(engines[row]) or before)
                kept[row] = {k: round(v, 4) for k, v in text_retention(engines[row].model, texts).items()}
        finally:
            torch.set_num_threads(before)
        return kept

    retained = clock.run("text retention", retention)

    def run_probe() -> dict[str, Any]:
        result = probe_vpg(zoo.blip2_dir, world, seed=seed)
        result.pop("seconds")  # the stage's time is in timings; the report's numbers stay run-independent
        result["probe"].pop("vpg", None)  # the zoo's path: in config.zoo
        return result

    probe = clock.run("probe", run_probe)

    def similarity() -> dict[str, Any]:
        from PIL import Image

        from vict.data.world.layout import world_files

        test = world_files(world, "test")
        test_ids = [im["file_name"] for im in json.loads(test["captions"].read_text())["images"]]
        images = [Image.open(test["images_dir"] / f).convert("RGB") for f in test_ids[: p.similarity_images]]
        blip2 = engines[SOURCE_ROW].blip2
        # the first VICT row with visual tokens: its projection into the target LM (VLoRA's rows have none)
        first = next((r for r in rows[1:] if engines[r].model.num_visual_tokens), None)
        with torch.no_grad():
            source_tokens = blip2.visual_tokens(images)
        series = {"source_lm": analyze_series(source_tokens, blip2.input_embeddings(), blip2.tokenizer)}
        curves = {"source Q-Former -> source LM (BLIP-2 projection)": series["source_lm"]["values"]}
        if first is not None:
            vict = engines[first].model
            with torch.no_grad():
                target_tokens = vict.encode_images(vict.vpg.preprocess(images)).tokens
            embeddings = vict.llm.get_input_embeddings().weight.detach()
            series["target_lm"] = analyze_series(target_tokens, embeddings, vict.tokenizer)
            curves[f"source Q-Former -> target LM ({first} projection)"] = series["target_lm"]["values"]
        plot_similarity_histogram(curves, out / "similarity.png")
        return {
            k: v["stats"] | {"tokens_per_image": v["tokens_per_image"], "images": v["images"]}
            for k, v in series.items()
        }

    sim = clock.run("similarity", similarity)

    def write() -> dict[str, Any]:
        baselines = blind_baselines(world)
        trainable = {SOURCE_ROW: zoo.manifest()["blip2"]["trained_parameters"]}
        for row in rows[1:]:
            trainable[row] = int(engines[row].model.trainable_parameters_by_part()["trainable"])
        gqa = {row: gqa_row(reports[row], settings) for row in rows}
        report = {
            "captioning": {row: caption_row(reports[row]) for row in rows},
            "gqa": gqa,
            "gqa_by_type": {row: gqa_by_type_row(reports[row], settings) for row in rows},
            "gqa_type_counts": gqa_type_counts([reports[row] for row in rows]),
            "gqa_distractor_drop": {row: distractor_drop(gqa[row]) for row in rows},
            "baselines": baselines,
            "text_retention": retained,
            "similarity": sim,
            "trainable_parameters": trainable,
            **({"transfer": transfer} if transfer else {}),
            **(scienceqa_tables(reports, world) if sqa_tasks else {}),
            "timings": {},
            "config": {
                "preset": preset_name,
                "overrides": list(overrides),
                "seed": seed,
                "world_images": p.world_images,
                "quickstart": asdict(p),
                "zoo": {"key": zoo.key, "dir": str(zoo.root), "reused": zoo.reused, **zoo.manifest()["config"]},
                "train": configs,
                "caption_metrics": list(metrics),
            },
            "zoo_quality": {
                "probe": probe,
                "vision_pretraining": zoo.manifest().get("vision", {}).get("held_out_cell_accuracy"),
                "blip2_captioning": zoo_caption_quality(zoo.manifest()["blip2"]["quality_val"]),
            },
        }
        plot_gqa(report["gqa"], baselines, out / "gqa_context.png")
        return report

    report = clock.run("report", write)
    report["timings"] = dict(clock.timings) | {"total": clock.total}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def quickstart_seeds(
    out: Path,
    preset: str | QuickstartPreset = "default",
    seeds: Sequence[int] = (0, 1, 2),
    printer: Callable[[str], None] = print,
    zoo_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``quickstart`` once per seed into ``out/seed-<k>/`` (each a complete single-seed run), then write
    ``out/report.json`` and ``out/report.md``: every number as ``{"mean", "std"}`` over the seeds (sample std,
    ``quickstart_report.aggregate``), ``seeds`` and ``per_seed`` (``{seed: path of its report.json}``).

    Returns the aggregated report.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {seeds}: give distinct seeds, e.g. --seeds 0,1,2")
    out = Path(out)
    reports, paths = {}, {}
    for k in seeds:
        printer(f"== seed {k} ({seeds.index(k) + 1}/{len(seeds)}) into {out / f'seed-{k}'}")
        reports[k] = quickstart(
            out / f"seed-{k}", preset, seed=k, printer=printer, zoo_dir=zoo_dir, overrides=overrides
        )
        paths[k] = out / f"seed-{k}" / "report.json"
    report = aggregate_seeds(reports, paths)
    plot_gqa(report["gqa"], report["baselines"], out / "gqa_context.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (the ``--seeds`` argument); an ``argparse`` error names the bad value."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct comma-separated integers, e.g. 0,1,2")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--out``, ``--preset`` and either ``--seed`` or ``--seeds``."""
    parser.add_argument("--out", default="vict-quickstart", help="output folder (default: ./vict-quickstart)")
    parser.add_argument(
        "--preset",
        default="default",
        choices=sorted(PRESETS),
        help="fast (~2 min), default (~9 min) or scienceqa (VICT, LaVIN and VLoRA on ScienceQA-mini, ~6 min)",
    )
    parser.add_argument(
        "--zoo",
        default=None,
        metavar="DIR",
        help="a finished zoo build to use instead of the shipped zoo (made by `vict zoo build --set KEY=VALUE "
        "--out OUT`: OUT/<key>)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of the preset (repeatable), e.g. world_images=3000, train_steps=1200, "
        "methods=lora,llama_adapter or method_lr=lora:5e-3 (a row's learning rate); an unknown key lists the known "
        "ones; the report records it (config.overrides)",
    )
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument(
        "--seed", type=int, default=None, help="seed of the world, the zoo and the trainings (default 0)"
    )
    seed.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="several seeds, e.g. 0,1,2: one full run per seed into OUT/seed-<k>/, then mean ± sample std "
        "in OUT/report.md and OUT/report.json (not with --seed)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the quickstart (once, or once per seed of ``--seeds``) and print the report's tables."""
    from vict.zoo import ZooIntegrityError, open_zoo

    out = Path(args.out)
    zoo_dir = Path(args.zoo) if args.zoo else None
    if zoo_dir is not None:
        try:
            open_zoo(zoo_dir)  # before any stage: a wrong folder fails at once
        except ZooIntegrityError as err:
            raise ValueError(f"--zoo {zoo_dir}: {err}") from None  # the command cannot run as given: exit 2
    overrides = list(args.overrides)  # quickstart applies them before any stage: a typo fails at once (exit 2)
    if args.seeds is not None:
        report = quickstart_seeds(out, args.preset, args.seeds, zoo_dir=zoo_dir, overrides=overrides)
    else:
        seed = 0 if args.seed is None else args.seed
        report = quickstart(out, args.preset, seed, zoo_dir=zoo_dir, overrides=overrides)
    print(markdown(report))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0
