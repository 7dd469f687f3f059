"""The VICT training recipe on ``accelerate.Accelerator``: one stage end to end, or a method's chain of stages.

Reads top to bottom: ``setup()`` (model, data, optimizer, schedule, resume or ``init_from``) -> ``train()`` (the
loop: ``_train_step`` per micro-batch with gradient accumulation, then ``_optimizer_step``: clipping, optimizer and
schedule steps; logging, validation, samples, checkpoints, graceful stop) -> ``cleanup()`` (final checkpoint,
``loss.png``). What trains is the model's single predicate (extra queries, connector, the method's delta); the
model class keeps every frozen part in eval mode and out of autograd.

Stages: ``train.init_from=DIR`` starts from a checkpoint's trainable weights with a fresh optimizer and schedule.
A method that declares stages (``Method.stages()``) is trained by ``train`` stage after stage, each in
``<output_dir>/<stage>/`` with its config overrides, each initialised from the previous stage's ``final/``.

The same code runs on one CPU, one GPU, ``torchrun --nproc_per_node N -m vict train ...`` (gloo on CPU) and
``accelerate launch [--config_file configs/accelerate/ddp.yaml] -m vict train ...``. Rank 0 alone writes files.

One run per output folder (``vict.training.run_lock``): the main process holds ``<output_dir>/.vict-run.lock`` for
the whole run, so a second run on the folder fails at once naming the holder; a folder holding an earlier run is
refused unless the run resumes it (``train.resume=true`` / ``resume_from``) or ``overwrite=True`` deletes that run's
outputs first.

Exactness of resume: the batch order is a pure function of ``(seed, epoch, position)``
(``vict.training.sampler``), each example a pure function of ``(seed, index)`` (``ExampleStream``), and a
checkpoint stores the optimizer, the schedule, every process's RNG states and the data position, so an
interrupted and resumed run reaches the same parameters as an uninterrupted one. A resume whose config differs in
a setting that changes the run (``vict.training.continuation.RESUME_MAY_CHANGE`` lists the ones that may change) is
refused, naming the setting.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vict.config import VictConfig, check_paths, config_to_dict, save_config
from vict.connectors.base import VisionFeatures
from vict.training.checkpoints import CONFIG_YAML, FINAL_DIR, latest_checkpoint, rotate_checkpoints, step_dir
from vict.training.continuation import check_resume_config, load_init_weights
from vict.training.metrics import MetricsLogger, Throughput, read_metrics
from vict.training.plots import plot_loss
from vict.training.run_lock import (
    RUN_OUTPUTS,
    RunLock,
    check_previous_run,
    is_main_process,
    remove_previous_run,
)
from vict.training.sampler import BatchPlan
from vict.training.sharding import (
    FsdpSettings,
    average_gradients,
    broadcast_trainable,
    fsdp_requested,
    refuse_deepspeed,
    shard_model,
)
from vict.training.signals import StopRequest
from vict.training.state import (
    TrainerState,
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)

TEXT_ONLY_KEY = "__text_only__"
"""Feature-cache key of text-only rows: one blank image's features, dropped by the model (the row has no slots)."""

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        output_dir: the run directory.
        final_dir: ``output_dir/final`` (``None`` when the run was stopped by a signal before the end).
        last_checkpoint: the newest resumable checkpoint written (``None`` if none).
        step: optimizer steps completed.
        stopped_by: ``"SIGTERM"`` / ``"SIGINT"`` when a signal stopped the run, else ``None``.
        train_losses: ``(step, loss)`` of every logged training step.
        val_losses: ``(step, loss)`` of every validation.
    """

    output_dir: Path
    final_dir: Path | None
    last_checkpoint: Path | None
    step: int
    stopped_by: str | None = None
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)


def train(
    cfg: VictConfig,
    resume_from: str | Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a VICT model as ``cfg`` says; return what was produced.

    One run per output folder: the run holds ``<output_dir>/.vict-run.lock`` from start to end (another run on the
    folder fails at once with ``RunLockedError``, naming this one's PID and host), and a folder that holds an
    earlier run (``final/``, ``checkpoints/``, ``metrics.jsonl``) is refused with ``PreviousRunError`` before
    anything is written, unless the run resumes it or ``overwrite`` is set.

    Args:
        cfg: the validated run config.
        resume_from: a ``checkpoints/step-*`` directory to continue from (``cfg.train.resume=True`` picks the
            latest one in ``cfg.train.output_dir`` instead).
        on_step: called on every process after each optimizer step with ``(step, loss)`` (tests, notebooks).
        overwrite: delete the earlier run's outputs in ``cfg.train.output_dir`` first (exactly the files a run
            writes; anything else there stays); not with a resume.
    """
    from vict.registry import get_method

    stages = get_method(cfg.method.type)(cfg.method.settings).stages()
    stage_names = [s.name for s in stages]
    _check_overwrite(cfg, resume_from, overwrite, stage_names)
    # Only the main process guards the folder: the others write nothing there (and must not fail on its lock).
    main_process = is_main_process()
    with RunLock(cfg.train.output_dir, setting="train.output_dir") if main_process else contextlib.nullcontext():
        if main_process:
            resuming = resume_from is not None or cfg.train.resume
            if overwrite:
                remove_previous_run(cfg.train.output_dir, stage_names)
            elif not resuming:
                check_previous_run(cfg.train.output_dir, stage_names)
        if stages:
            return train_stages(cfg, stages, resume_from=resume_from, on_step=on_step)
        recipe = TrainRecipe(cfg, resume_from=resume_from, on_step=on_step)
        recipe.setup()
        try:
            recipe.train()
        finally:
            result = recipe.cleanup()
        return result


def _check_overwrite(cfg: VictConfig, resume_from: str | Path | None, overwrite: bool, stages: list[str]) -> None:
    """``overwrite`` starts over: it cannot be combined with a resume, nor delete what the run starts from."""
    if not overwrite:
        return
    if resume_from is not None or cfg.train.resume:
        how = f"--resume {resume_from}" if resume_from is not None else "train.resume=true"
        raise ValueError(
            f"--overwrite deletes the previous run in {cfg.train.output_dir}, {how} continues it: choose one"
        )
    if cfg.train.init_from:
        init = Path(cfg.train.init_from).resolve()
        root = Path(cfg.train.output_dir).resolve()
        doomed = [root / name for name in RUN_OUTPUTS] + [root / s / name for s in stages for name in RUN_OUTPUTS]
        if any(init == d or d in init.parents for d in doomed):
            raise ValueError(
                f"--overwrite would delete train.init_from={cfg.train.init_from} (inside train.output_dir="
                f"{cfg.train.output_dir}); copy it elsewhere first, or train into another train.output_dir"
            )


def stage_config(cfg: VictConfig, stage: Any, output_dir: Path, init_from: Path | None) -> VictConfig:
    """The run config of one stage: ``cfg`` with the stage's overrides, its own output folder and ``init_from``."""
    from vict.config import apply_overrides, config_from_dict

    overrides = {**stage.overrides_for(cfg), "train.output_dir": str(output_dir)}
    if init_from is not None:
        overrides["train.init_from"] = str(init_from)
    data = apply_overrides(config_to_dict(cfg), [f"{k}={_yaml_value(v)}" for k, v in overrides.items()])
    return config_from_dict(data, source=f"stage {stage.name!r} of method {cfg.method.type!r}")


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def train_stages(
    cfg: VictConfig,
    stages: Any,
    resume_from: str | Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Run a method's stages in order (``<output_dir>/<stage>/``), each initialised from the previous one's
    ``final/``; with ``train.resume=true`` a finished stage (its ``final/`` exists) is kept and an interrupted one
    resumes. Returns the last stage's result (its ``final/`` is the model)."""
    if resume_from is not None:
        raise ValueError(
            f"method {cfg.method.type!r} trains in stages ({', '.join(s.name for s in stages)}): resume with "
            "train.resume=true (each stage folder keeps its own checkpoints) instead of --resume DIR"
        )
    root = Path(cfg.train.output_dir)
    previous: Path | None = None
    result: TrainResult | None = None
    for k, stage in enumerate(stages, 1):
        stage_cfg = stage_config(cfg, stage, root / stage.name, previous)
        final = root / stage.name / FINAL_DIR
        if cfg.train.resume and (final / "config.json").is_file():
            logger.info("stage %d/%d %s: already trained (%s), kept", k, len(stages), stage.name, final)
            previous = final
            continue
        logger.info("stage %d/%d %s: %s", k, len(stages), stage.name, stage.description)
        recipe = TrainRecipe(stage_cfg, on_step=on_step)
        recipe.setup()
        try:
            recipe.train()
        finally:
            result = recipe.cleanup()
        if result.final_dir is None:  # stopped by a signal: the later stages wait for the resume
            return result
        previous = result.final_dir
    if result is None:  # every stage was already trained
        result = TrainResult(output_dir=root, final_dir=previous, last_checkpoint=None, step=0)
    return result


class TrainRecipe:
    """``setup() -> train() -> cleanup()``; see the module docstring."""

    def __init__(
        self,
        cfg: VictConfig,
        resume_from: str | Path | None = None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.on_step = on_step
        self.output_dir = Path(cfg.train.output_dir)
        self.state = TrainerState()
        self.stop = StopRequest()
        self.last_checkpoint: Path | None = None
        self.final_dir: Path | None = None
        self.train_losses: list[tuple[int, float]] = []
        self.val_losses: list[tuple[int, float]] = []

    # =========================================================================================== setup
    def setup(self) -> None:
        """Accelerator, seeds, model, data, optimizer, schedule; then restore a checkpoint if resuming."""
        from accelerate import Accelerator

        cfg, tc = self.cfg, self.cfg.train
        problems = check_paths(cfg)
        if problems:
            from vict.config import ConfigError

            raise ConfigError(problems, "paths in the config")
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        if tc.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise ValueError("train.mixed_precision=fp16 needs a GPU; on CPU use bf16 or no")
        refuse_deepspeed()
        # accelerate recognises a multi-process CPU run (gloo) only with cpu=True: without it, torchrun's ranks
        # each train alone on a machine without GPUs.
        multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1
        # An FSDP config (accelerate launch --config_file configs/accelerate/fsdp.yaml): vict shards the model itself
        # (vict.training.sharding), on GPUs and CPU ranks alike; accelerate only sets up the processes.
        fsdp = FsdpSettings.from_env() if fsdp_requested() and multi_process else None
        with _fsdp_hidden_from_accelerate():
            self.accelerator = Accelerator(
                mixed_precision=tc.mixed_precision, cpu=multi_process and not torch.cuda.is_available()
            )
        acc = self.accelerator
        self.rank, self.world_size = acc.process_index, acc.num_processes
        self.is_main = acc.is_main_process
        self.fsdp = fsdp
        if fsdp_requested() and not multi_process:
            self._info("an FSDP config with one process: nothing to shard, training as one process")

        # 1. Resume point (decided first: a resumed model comes from its checkpoint).
        resume_dir = self.resume_from
        if resume_dir is None and tc.resume:
            resume_dir = latest_checkpoint(self.output_dir)
            if resume_dir is None:
                self._info(f"train.resume=true but {self.output_dir} has no checkpoint yet: starting from scratch")
        if resume_dir is not None and not (resume_dir / "training_state").is_dir():
            raise FileNotFoundError(
                f"--resume {resume_dir}: not a training checkpoint (no training_state/ inside); resumable "
                f"checkpoints are {self.output_dir}/checkpoints/step-*"
            )
        self.resume_dir = resume_dir

        # 2. Seeds: every process gets its own stream (dropout), all derived from train.seed.
        self._seed_everything(tc.seed + self.rank)

        # 3. Model: frozen VPG + trainable extra queries + connector + the method's delta. Rank 0 first, so that
        #    files a builder writes (the tiny builder's checkpoints, hub downloads) are written once, then read by all.
        with acc.main_process_first():
            self.model = self._build_model()
        self.tokenizer = self.model.tokenizer

        # 4. Data: records -> instruction stream (ratios) -> deterministic batch plan -> collator.
        self._setup_data()

        # 5. Optimizer over trainable parameters only (projection with its own learning rate) and schedule.
        steps_per_epoch = max(1, self.plan.batches_per_epoch // tc.grad_accum)
        self.total_steps = tc.max_steps or max(1, math.ceil((tc.epochs or 1.0) * steps_per_epoch))
        if tc.warmup_steps >= self.total_steps:
            raise ValueError(
                f"train.warmup_steps={tc.warmup_steps} >= the run's {self.total_steps} steps; lower warmup_steps"
            )
        if self.fsdp is not None:
            broadcast_trainable([p for p in self.model.parameters() if p.requires_grad])
            counts = shard_model(self.model, self.fsdp, acc.device)
            self._info(
                f"{self.fsdp.describe(self.world_size)}: {counts['units']} units; {counts['sharded_tensors']} "
                f"sharded tensors ({counts['local_numel']:,} of their {counts['sharded_numel']:,} elements on this "
                f"process), {counts['replicated_tensors']} replicated"
            )
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        if self.fsdp is not None:
            self.optimizer = acc.prepare(self.optimizer)
        else:
            self.model, self.optimizer = acc.prepare(self.model, self.optimizer)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

        # 6. Restore everything a checkpoint holds.
        if resume_dir is not None:
            self._restore(resume_dir)
        self._info(
            f"training {self.total_steps} steps ({self.plan.batches_per_epoch} micro-batches/epoch of "
            f"{tc.batch_size} x {self.world_size} process(es), grad_accum {tc.grad_accum}); "
            f"output {self.output_dir}"
            + (f"; resumed at step {self.state.step} from {resume_dir}" if resume_dir else "")
        )
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.output_dir / CONFIG_YAML)
            self.metrics = MetricsLogger(self.output_dir, resume_step=self.state.step if resume_dir else None)

    def _build_model(self) -> Any:
        """The model as the config describes it; then the trainable weights of the checkpoint resumed from
        (exactly its own) or of ``train.init_from`` (an earlier stage's: what it holds, the rest kept)."""
        model = self._build_fresh_model()
        if self.resume_dir is not None:
            check_resume_config(self.resume_dir, self.cfg)
            model.load_trainable(self.resume_dir, strict=True)
        elif self.cfg.train.init_from:
            loaded = load_init_weights(model, Path(self.cfg.train.init_from))
            self._info(
                f"train.init_from={self.cfg.train.init_from}: {len(loaded['loaded'])} trainable tensors loaded"
                + (f", {len(loaded['kept'])} start fresh ({', '.join(loaded['kept'][:6])})" if loaded["kept"] else "")
            )
        return model

    def _build_fresh_model(self) -> Any:
        from vict.models.builders import build_tiny, build_vision_llm

        mc = self.cfg.model
        if mc.builder == "tiny":
            kwargs = {"seed": self.cfg.train.seed, **mc.tiny}
            return build_tiny(
                self.cfg.method,
                num_extra_queries=mc.num_extra_queries,
                frozen_dtype=mc.frozen_dtype,
                logits_on_labelled_only=mc.logits_on_labelled_only,
                connector=self.cfg.connector,
                **kwargs,
            )
        vpg_source, llm_source = mc.vpg_source, mc.llm_source
        if mc.builder == "zoo":
            # The miniature zoo: the shipped one, or built once per preset and reused from its cache afterwards.
            from vict.zoo import resolve_zoo

            zoo = resolve_zoo(mc.zoo_preset, Path(mc.zoo_dir) / "zoo")
            vpg_source, llm_source = str(zoo.blip2_dir), str(zoo.target_lm_dir)
        return build_vision_llm(
            vpg_source,
            llm_source,
            method=self.cfg.method,
            num_extra_queries=mc.num_extra_queries,
            vpg_format=mc.vpg_format,
            frozen_dtype=mc.frozen_dtype,
            logits_on_labelled_only=mc.logits_on_labelled_only,
            seed=self.cfg.train.seed,
            connector=self.cfg.connector,
        )

    def _load_records(self, split: str) -> list[Any]:
        from vict.data.dataset import load_dataset, load_records

        dc = self.cfg.data
        if dc.world:
            records = load_records(world=dc.world, split=split, policy=self.image_policy)
        else:
            fill = lambda p: p.replace("{split}", split) if p else p  # noqa: E731
            records = load_dataset(
                fill(dc.captions),
                fill(dc.questions),
                fill(dc.images),
                dc.vg_image_data,
                keep="any",
                policy=self.image_policy,
            ).records
        return records[: dc.max_images] if dc.max_images else records

    def _setup_data(self) -> None:
        from vict.data.collate import VictCollator
        from vict.data.policy import resolve_policy
        from vict.data.prompts import InstructionBuilder, load_templates

        dc, tc = self.cfg.data, self.cfg.train
        builder = InstructionBuilder(
            templates=load_templates(dc.templates) if dc.templates else None,
            ratios=dc.normalised_ratios(),
            style_ratios={"short": 1.0 - dc.sentence_ratio, "sentence": dc.sentence_ratio},
            seed=tc.seed,
        )
        self.builder = builder
        # skip mode counts bad records (at load) and bad images (in the collator); reported at the end
        self.image_policy = resolve_policy(dc.bad_input)
        self.stream = self._mixed(self._image_stream(dc.train_split, builder, tc.seed), dc.train_split, tc.seed)
        if self.stream.dropped:
            self._info(f"{self.stream.dropped} training image(s) have no usable caption/question and are skipped")
        self.collator = VictCollator(
            self.tokenizer,
            num_visual_tokens=self.model.num_visual_tokens,
            image_processor=self.model.image_processor,
            max_length=dc.max_length,
            padding_side=dc.padding_side,
            use_chat_template=dc.use_chat_template,
            policy=self.image_policy,
        )
        self.vision_cache = None
        if tc.cache_vision_features:
            from vict.models.feature_cache import FeatureCache

            # Batches carry text and image ids only; the model's features of each image (those no trainable
            # parameter changes) come from the cache.
            self.text_collator = VictCollator(
                self.tokenizer,
                num_visual_tokens=self.model.num_visual_tokens,
                image_processor=None,
                max_length=dc.max_length,
                padding_side=dc.padding_side,
                use_chat_template=dc.use_chat_template,
            )
            self.vision_cache = FeatureCache(
                self._encode_features,
                self._load_cached_image,
                batch_size=max(1, tc.batch_size),
                max_bytes=int(tc.vision_cache_max_gb * 2**30),
                limit_setting="train.vision_cache_max_gb",
            )
            self.vision_level = self.model.connector.cache_level(self.model.vpg, training=True)
        n = len(self.stream)

        def length_of(epoch: int, i: int) -> int:
            ex = self.stream[epoch * n + i]
            return len(self.tokenizer(ex.prompt + " " + ex.target)["input_ids"])

        self.plan = BatchPlan(
            num_examples=n,
            batch_size=tc.batch_size,
            world_size=self.world_size,
            seed=tc.seed,
            group_by_length=tc.group_by_length,
            length_of=length_of,
        )
        self.val_stream, self.val_plan = None, None
        if dc.val_split and tc.val_batches > 0:
            val_stream = self._mixed(self._image_stream(dc.val_split, builder, tc.seed + 1), dc.val_split, tc.seed + 1)
            if len(val_stream) >= tc.batch_size * self.world_size:
                self.val_stream = val_stream
                self.val_plan = BatchPlan(len(val_stream), tc.batch_size, self.world_size, seed=tc.seed + 1)
            else:
                self._info(f"validation split has {len(val_stream)} examples < one batch: no validation loss")

    def _image_stream(self, split: str, builder: Any, seed: int) -> Any:
        """VICT's instruction stream over the split's image records (``None`` when training is ScienceQA only)."""
        from vict.data.prompts import ExampleStream

        if self.cfg.data.sqa_ratio == 1:
            return None
        return ExampleStream(self._load_records(split), builder, seed=seed)

    def _mixed(self, stream: Any, split: str, seed: int) -> Any:
        """``stream`` with ScienceQA problems and text-only rows mixed in (``vict.data.mixing``), when configured."""
        dc = self.cfg.data
        if not dc.sqa_ratio and not dc.text_only_ratio:
            return stream
        from vict.data.mixing import MixedStream, ProblemStream

        problems = None
        if dc.sqa_ratio:
            from vict.data.scienceqa import load_scienceqa

            path = Path(dc.scienceqa) if dc.scienceqa else Path(dc.world or ".") / "scienceqa" / "problems.json"
            if not dc.scienceqa and not dc.world:
                raise ValueError("data.sqa_ratio > 0 needs data.scienceqa (a problems.json) or data.world")
            loaded = load_scienceqa(path, split=split, image_root=path.parent / "images", policy=self.image_policy)
            problems = ProblemStream(loaded, fmt=dc.sqa_format, seed=seed)
        return MixedStream(stream, problems, dc.sqa_ratio, dc.text_only_ratio, seed=seed)

    @staticmethod
    def _load_cached_image(source: tuple[str, Path | None]) -> Any:
        from vict.data.images import load_image

        image_id, path = source
        if image_id == TEXT_ONLY_KEY:  # text-only rows: the collator's blank (see _encode_features)
            return None
        if path is None:
            raise ValueError(f"image {image_id}: no image_path; load records with an images directory")
        return load_image(path, record=f"image {image_id}")

    @torch.no_grad()
    def _encode_features(self, images: list[Any]) -> torch.Tensor:
        """The cached features of a batch of images (``VisionLLM.vision_features`` at the training level)."""
        model = self.accelerator.unwrap_model(self.model)
        # the collator's pixels: a text-only row (None) is all zeros, as without the cache (a zero-token connector
        # tells text-only rows apart by it)
        pixels = self.collator._pixel_values(images).to(self.accelerator.device)
        with self.accelerator.autocast():
            return model.connector.features(model.vpg, pixels, self.vision_level)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        tc = self.cfg.train
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            is_connector = name.startswith("connector.")
            decay = param.ndim >= 2 and "quer" not in name  # no decay on biases, norms and query embeddings
            groups.setdefault((is_connector, decay), []).append(param)
        if not groups:
            raise ValueError(
                "the model has no trainable parameters; check method.type, the connector and model.num_extra_queries"
            )
        param_groups = []
        for (is_connector, decay), params in sorted(groups.items()):
            lr = (tc.connector_lr or tc.lr) if is_connector else tc.lr
            param_groups.append({"params": params, "lr": lr, "weight_decay": tc.weight_decay if decay else 0.0})
        return torch.optim.AdamW(param_groups, lr=tc.lr, betas=(0.9, 0.999), eps=1e-8)

    def _make_scheduler(self) -> Any:
        from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

        tc = self.cfg.train
        if tc.schedule == "cosine":
            return get_cosine_schedule_with_warmup(self.optimizer, tc.warmup_steps, self.total_steps)
        return get_constant_schedule_with_warmup(self.optimizer, tc.warmup_steps)

    def _restore(self, directory: Path) -> None:
        trainer, rng = load_training_state(directory, self.optimizer, self.scheduler, rank=self.rank)
        tc = self.cfg.train
        now = {"world_size": self.world_size, "batch_size": tc.batch_size, "grad_accum": tc.grad_accum}
        then = {k: getattr(trainer, k) for k in now}
        if now != then:
            raise ValueError(
                f"{directory} was written with {then}, this run has {now}; the batch order would differ. "
                "Resume with the same number of processes, train.batch_size and train.grad_accum"
            )
        if trainer.seed != tc.seed:
            raise ValueError(f"{directory} was written with train.seed={trainer.seed}; this run has {tc.seed}")
        self.state = trainer
        restore_rng_state(rng)
        if self.is_main:
            old = read_metrics(self.output_dir / "metrics.jsonl")
            self.train_losses = [
                (r["step"], r["loss"]) for r in old if r["split"] == "train" and r["step"] <= trainer.step
            ]
            self.val_losses = [
                (r["step"], r["loss"]) for r in old if r["split"] == "val" and r["step"] <= trainer.step
            ]

    # =========================================================================================== train
    def train(self) -> None:
        """The loop: accumulate ``grad_accum`` micro-batches, clip, step, then log / validate / sample / save."""
        acc, tc = self.accelerator, self.cfg.train
        model, trainable = self.model, self.trainable
        batches = self._batches(self.state.data_position)
        throughput = Throughput()
        window: list[float] = []
        progress = self._progress()
        model.train()  # VisionLLM.train keeps every frozen part in eval mode
        with self.stop:
            while self.state.step < self.total_steps:
                step_start = self.state.data_position
                # RNG at the step boundary (tiny: a few KB), so an emergency checkpoint resumes exactly.
                self._step_rng = capture_rng_state() if self.world_size == 1 else None
                try:
                    # 1. Forward/backward over grad_accum micro-batches; DDP syncs gradients on the last one.
                    step_loss = torch.zeros((), device=acc.device)
                    for micro in range(tc.grad_accum):
                        batch = next(batches)
                        step_loss += self._train_step(batch, sync=micro == tc.grad_accum - 1)
                        self.state.data_position += 1
                        throughput.add(batch["input_ids"].shape[0], int(batch["attention_mask"].sum()))
                    # 2. The loss averaged over processes (one scalar all-reduce), checked before any update.
                    mean_loss = float(acc.reduce(step_loss, reduction="mean"))
                    if not math.isfinite(mean_loss):
                        raise FloatingPointError(
                            f"loss is {mean_loss} at step {self.state.step + 1}; lower train.lr or enable "
                            "clipping (train.max_grad_norm)"
                        )
                except Exception as err:
                    # Parameters and optimizer are still at the last step boundary: keep the work done so far.
                    self._emergency_checkpoint(step_start, err)
                    raise
                # 3. Clip, step the optimizer and the schedule.
                grad_norm = self._optimizer_step(trainable)
                self.state.step += 1
                self.state.epoch = self.state.data_position / self.plan.batches_per_epoch
                # 4. Records, periodic validation / samples / checkpoints.
                window.append(mean_loss)
                if self.on_step is not None:
                    self.on_step(self.state.step, mean_loss)
                step = self.state.step
                if step % tc.log_every == 0 or step == self.total_steps:
                    self._log_train(step, window, grad_norm, throughput, progress)
                    window = []
                if progress is not None:
                    progress.update(1)
                if tc.eval_every and step % tc.eval_every == 0 and step < self.total_steps:
                    self._validate()
                if tc.sample_every and step % tc.sample_every == 0 and step < self.total_steps:
                    self._sample()
                if tc.save_every and step % tc.save_every == 0 and step < self.total_steps:
                    self._save_checkpoint()
                # 5. A signal on any process stops every process after the same step, with a checkpoint.
                if self._stop_requested():
                    self._save_checkpoint()
                    self._info(f"{self.stop.requested}: saved {self.last_checkpoint}; resume with train.resume=true")
                    break
        if progress is not None:
            progress.close()

    def _train_step(self, batch: dict[str, Any], sync: bool = True) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns its loss (detached) divided by ``grad_accum``.
        ``sync=False`` skips DDP's gradient all-reduce (every micro-batch of a step but the last)."""
        acc, accum = self.accelerator, self.cfg.train.grad_accum
        with contextlib.nullcontext() if sync else acc.no_sync(self.model):
            with self._forward_context():
                loss = self.model(**batch).loss
            acc.backward(loss / accum)
        if sync and self.fsdp is not None:  # FSDP leaves the replicated trainable gradients to vict
            average_gradients(self.trainable)
        return loss.detach() / accum

    def _forward_context(self) -> Any:
        """Mixed precision around a forward: ``accelerate.prepare`` wraps the model's forward in it, except under
        vict's FSDP, whose model accelerate never wraps."""
        return self.accelerator.autocast() if self.fsdp is not None else contextlib.nullcontext()

    def _optimizer_step(self, trainable: list[torch.nn.Parameter]) -> Any:
        """Clip the gradients (``train.max_grad_norm``), step the optimizer and the schedule, clear the
        gradients; returns the gradient norm before clipping (``None`` without clipping)."""
        max_norm = self.cfg.train.max_grad_norm
        grad_norm = self.accelerator.clip_grad_norm_(trainable, max_norm) if max_norm else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _emergency_checkpoint(self, step_start: int, err: Exception) -> None:
        """After an error inside a step (bad input in fail mode, a non-finite loss), save the state of the last
        completed step so that no finished work is lost; single-process runs only (in a multi-process run the
        other ranks may be blocked in a collective, so their last periodic checkpoint is what remains)."""
        if self.world_size > 1 or self.state.step == 0:
            return
        self.state.data_position = step_start
        self.optimizer.zero_grad(set_to_none=True)
        try:
            path = self._save_checkpoint(rng=self._step_rng)
        except Exception as save_err:  # never mask the original error
            logger.error("could not save an emergency checkpoint: %s", save_err)
            return
        logger.error(
            "%s at step %d: saved the last completed step to %s; fix the cause and rerun with train.resume=true",
            type(err).__name__,
            self.state.step + 1,
            path,
        )

    def _batches(self, start: int):
        """Collated micro-batches of this process from global position ``start`` on, on the right device."""
        from torch.utils.data import DataLoader, Dataset

        from vict.data.collate import is_text_only

        recipe = self

        class _Planned(Dataset):
            def __len__(self) -> int:
                return 2**62

            def __getitem__(self, position: int) -> dict[str, Any]:
                epoch, indices = recipe.plan.local_batch(position, recipe.rank)
                n = len(recipe.stream)
                examples = [recipe.stream[epoch * n + i] for i in indices]
                if recipe.vision_cache is None:
                    return recipe.collator(examples)
                batch = recipe.text_collator(examples)
                text_only = [is_text_only(e) for e in examples]
                batch["image_ids"] = [TEXT_ONLY_KEY if t else e.image_id for e, t in zip(examples, text_only)]
                batch["image_paths"] = [None if t else e.image_path for e, t in zip(examples, text_only)]
                return batch

        class _From(torch.utils.data.Sampler):
            def __iter__(self):
                position = start
                while True:
                    yield position
                    position += 1

        workers = self.cfg.data.num_workers
        # A private generator: creating a DataLoader iterator draws a base seed, which from the global RNG would
        # shift the dropout stream of a resumed run relative to an uninterrupted one.
        generator = torch.Generator().manual_seed(self.cfg.train.seed)
        loader = DataLoader(
            _Planned(),
            batch_size=None,
            sampler=_From(),
            generator=generator,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
        )
        device = self.accelerator.device
        for batch in loader:
            features = None
            if "image_ids" in batch:
                # Cached features: the model's features of each image at the training level, made on first sight.
                ids, paths = batch.pop("image_ids"), batch.pop("image_paths")
                rows = self.vision_cache.get(ids, list(zip(ids, paths)), device)
                features = VisionFeatures(self.vision_level, rows)
            out = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            if features is not None:
                out["features"] = features
            yield out

    def _stop_requested(self) -> bool:
        flag = torch.tensor(1.0 if self.stop.requested else 0.0, device=self.accelerator.device)
        if self.world_size > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
            if flag.item() > 0 and self.stop.requested is None:
                self.stop.requested = "peer signal"
        return bool(flag.item() > 0)

    # ============================================================================== validation, samples
    @torch.no_grad()
    def _validate(self) -> float | None:
        if self.val_plan is None:
            return None
        model, acc = self.model, self.accelerator
        n_batches = min(self.cfg.train.val_batches, self.val_plan.batches_per_epoch)
        total = torch.zeros((), device=acc.device)
        model.eval()
        try:
            for position in range(n_batches):
                _, indices = self.val_plan.local_batch(position, self.rank)
                batch = self.collator([self.val_stream[i] for i in indices])
                batch = {k: v.to(acc.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
                with self._forward_context():
                    total += model(**batch).loss.float() / n_batches
        finally:
            model.train()
        loss = float(acc.reduce(total, reduction="mean"))
        self.val_losses.append((self.state.step, loss))
        if self.state.best_val_loss is None or loss < self.state.best_val_loss:
            self.state.best_val_loss = loss
        if self.is_main:
            self.metrics.log(self.state.step, "val", loss=loss)
            self._info(f"step {self.state.step}: validation loss {loss:.4f}")
        return loss

    @torch.no_grad()
    def _sample(self) -> None:
        """Caption a few validation images and answer one question each, on rank 0 (printed and logged). Under FSDP
        every rank generates (each holds only a shard of the LLM), and rank 0 reports."""
        count = self.cfg.train.sample_count
        if (not self.is_main and self.fsdp is None) or self.val_stream is None or count == 0:
            self.accelerator.wait_for_everyone()
            return
        from vict.inference import VictEngine, make_collator

        model, dc = self.accelerator.unwrap_model(self.model), self.cfg.data
        collator = make_collator(model, max_length=dc.max_length, use_chat_template=dc.use_chat_template)
        engine = VictEngine(
            model, self.builder, collator, max_new_tokens=self.cfg.train.sample_max_new_tokens, reuse_features=False
        )
        records = self.val_stream.records[:count]
        if not records:  # ScienceQA-only training: no image records to caption
            self.accelerator.wait_for_everyone()
            return
        with self._forward_context():
            captions = engine.caption([r.image_path for r in records])
            asked = [r for r in records if r.answered_qas]
            answers = engine.answer([r.image_path for r in asked], [r.answered_qas[0].question for r in asked])
        if not self.is_main:
            self.accelerator.wait_for_everyone()
            return
        gold = {r.image_id: r.answered_qas[0].answer or "" for r in asked}
        lines = [(r.image_id, "cap", "", text, "") for r, text in zip(records, captions)]
        lines += [(r.image_id, "qa", a.question, a.answer, gold[r.image_id]) for r, a in zip(asked, answers)]
        for image_id, kind, question, text, target in lines:
            line = f"[{image_id}] {kind}{' ' + question if question else ''} -> {text!r}"
            if kind == "qa":
                line += f" (gold {target!r})"
            self._info(f"sample at step {self.state.step}: {line}")
            self.metrics.log(self.state.step, "sample", image_id=image_id, kind=kind, text=text, gold=target)
        self.accelerator.wait_for_everyone()

    # =========================================================================================== records
    def _progress(self) -> Any:
        if not self.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total_steps, initial=self.state.step, desc="vict train", unit="step", dynamic_ncols=True
        )

    def _log_train(
        self, step: int, window: list[float], grad_norm: Any, throughput: Throughput, progress: Any
    ) -> None:
        loss = sum(window) / len(window)
        samples_s, tokens_s = throughput.rate()
        # Throughput counted on this process; all processes see the same batch sizes, so scale by world size.
        samples_s, tokens_s = samples_s * self.world_size, tokens_s * self.world_size
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.train_losses.append((step, loss))
        if not self.is_main:
            return
        record = {
            "loss": loss,
            "lr": max(lrs),
            "epoch": round(self.state.epoch, 4),
            "samples_per_s": round(samples_s, 3),
            "tokens_per_s": round(tokens_s, 1),
        }
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        self.metrics.log(step, "train", **record)
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{max(lrs):.2e}", samples_s=f"{samples_s:.1f}")

    def _info(self, message: str) -> None:
        if getattr(self, "is_main", True):
            logger.info(message)

    # ======================================================================================= checkpoints
    def _save_checkpoint(self, rng: dict[str, Any] | None = None) -> Path:
        """``checkpoints/step-N``: trainable parts + config.yaml + training state, atomic; keep the last K.

        ``rng``: this process's RNG state to record (default: the current one)."""
        from accelerate.utils import gather_object

        from vict.checkpoint import atomic_directory

        acc = self.accelerator
        rng = rng if rng is not None else capture_rng_state()
        portable = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in rng.items()}
        states = gather_object([portable]) if self.world_size > 1 else [portable]
        path = step_dir(self.output_dir, self.state.step)
        if self.is_main:
            rng_states = [
                {k: (torch.tensor(v, dtype=torch.uint8) if k in ("torch", "cuda") else v) for k, v in s.items()}
                for s in states
            ]
            self.state.world_size = self.world_size
            self.state.batch_size = self.cfg.train.batch_size
            self.state.grad_accum = self.cfg.train.grad_accum
            self.state.seed = self.cfg.train.seed
            with atomic_directory(path, manifest=True) as tmp:
                self._save_model(tmp)
                save_config(self.cfg, tmp / CONFIG_YAML)
                save_training_state(tmp, self.state, self.optimizer, self.scheduler, rng_states)
            rotate_checkpoints(self.output_dir, self.cfg.train.keep_last)
        acc.wait_for_everyone()
        self.last_checkpoint = path
        return path

    def _save_final(self) -> Path:
        from vict.checkpoint import atomic_directory

        path = self.output_dir / FINAL_DIR
        if self.is_main:
            with atomic_directory(path, manifest=True) as tmp:
                self._save_model(tmp)
                save_config(self.cfg, tmp / CONFIG_YAML)
        self.accelerator.wait_for_everyone()
        return path

    def _save_model(self, directory: Path) -> None:
        """The trainable parts, via ``VisionLLM.save_pretrained`` (never frozen weights, even with LoRA on lm_head)."""
        self.accelerator.unwrap_model(self.model).save_pretrained(directory)

    # =========================================================================================== cleanup
    def cleanup(self) -> TrainResult:
        """At the end: validation, a sample, the last step checkpoint and ``final/``, ``loss.png``."""
        finished = self.state.step >= getattr(self, "total_steps", math.inf) and not self.stop.requested
        if finished:
            self._validate()
            self._sample()
            if self.last_checkpoint is None or self.last_checkpoint != step_dir(self.output_dir, self.state.step):
                self._save_checkpoint()
            self.final_dir = self._save_final()
        if getattr(self, "is_main", False) and hasattr(self, "metrics"):
            self.metrics.close()
            records = read_metrics(self.output_dir / "metrics.jsonl")
            if records:
                plot_loss(
                    records, self.output_dir / "loss.png", title=f"{self.cfg.method.type} - {self.output_dir.name}"
                )
            if finished:
                self._info(
                    f"done: {self.final_dir} (load with VisionLLM.from_pretrained), {self.output_dir / 'loss.png'}"
                )
        cache = getattr(self, "vision_cache", None)
        if cache is not None:
            self._info(
                f"feature cache ({self.vision_level}): {len(cache)} images, {cache.bytes / 2**20:.1f} MiB, "
                f"{cache.hits} hits / {cache.encoded} encoded"
            )
        policy = getattr(self, "image_policy", None)
        if policy is not None and policy.report:
            logger.warning("bad inputs skipped during training: %s", policy.report.summary())
        if hasattr(self, "accelerator"):
            self.accelerator.end_training()
        return TrainResult(
            output_dir=self.output_dir,
            final_dir=self.final_dir,
            last_checkpoint=self.last_checkpoint,
            step=self.state.step,
            stopped_by=self.stop.requested,
            train_losses=list(self.train_losses),
            val_losses=list(self.val_losses),
        )

    # ============================================================================================= utils
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


@contextlib.contextmanager
def _fsdp_hidden_from_accelerate() -> Any:
    """Build the ``Accelerator`` without ``ACCELERATE_USE_FSDP``: on GPUs accelerate would otherwise wrap the model
    in its own FSDP at ``prepare``; vict shards it itself (``vict.training.sharding``)."""
    saved = os.environ.pop("ACCELERATE_USE_FSDP", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["ACCELERATE_USE_FSDP"] = saved
