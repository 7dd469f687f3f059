"""``vpgtrans``: VPGTrans's transfer of a BLIP-2 VPG to a new LLM (projector warm-up, then joint tuning of the VPG).

Recipe (the reference code's, DESIGN §4), as two chained stages (``Method.stages``):
1. ``warmup``: only the projector trains, at ``warmup_lr_scale`` × the base learning rate, constant, for
   ``warmup_epochs`` passes over the data. The projector starts from the merged init converter ∘ source projector
   (``vict transfer converter`` + ``vict transfer merge``, given as ``connector.init_weights``); without it, from a
   random start (the "no converter init" ablation).
2. ``joint`` ("direct fine-tuning"): the Q-Former, its queries, the vision tower's last layer norm (LAVIS's
   ``ln_vision``, ``tune_ln_vision``) and the projector train together at the base rate with the run's schedule;
   the LLM stays frozen (this method adds no delta to it).

``qformer_init: random`` re-initialises the Q-Former and its queries (BLIP-2's initialiser, seeded); with
``warmup_epochs: 0`` and no ``connector.init_weights`` it is the "train the VPG from scratch on the new LLM"
baseline of VPGTrans's speed-up measurement, on the same data, LLM and frozen vision tower.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from vict.methods.base import Method, Stage
from vict.registry import register_method
from vict.settings import help_field, raise_problems

QFORMER_PREFIXES: tuple[str, ...] = ("vpg.qformer.", "vpg.query_tokens")
LN_VISION_PREFIX = "vpg.vision_model.post_layernorm."


@dataclass
class VpgTransSettings:
    """VPGTrans's stages and what its joint stage tunes."""

    stage: Literal["warmup", "joint"] = help_field(
        "what trains: `warmup` the projector alone, `joint` the Q-Former, queries, ln_vision and projector (the "
        "recipe sets it per stage; set it yourself only to run one stage by hand)",
        default="joint",
    )
    warmup_epochs: float = help_field(
        "passes over the training images of the projector warm-up (0: no warm-up, the ablation)", default=1.0
    )
    warmup_lr_scale: float = help_field(
        "the warm-up's constant learning rate, as a multiple of train.lr (the paper: 5; 10 also converged)",
        default=5.0,
    )
    tune_ln_vision: bool = help_field(
        "the joint stage also tunes the vision tower's final layer norm (LAVIS ln_vision), as the reference does",
        default=True,
    )
    qformer_init: Literal["pretrained", "random"] = help_field(
        "`pretrained`: the BLIP-2's Q-Former and queries; `random`: re-initialised (with warmup_epochs=0, the "
        "train-from-scratch baseline)",
        default="pretrained",
    )

    def __post_init__(self) -> None:
        raise_problems(vpgtrans_problems(self), "invalid VPGTrans settings")


def vpgtrans_problems(s: Any) -> list[str]:
    """The problems of VPGTrans's stage fields of a settings object (``vpgtrans`` and ``vpgtrans_lora``)."""
    problems = []
    if s.stage not in ("warmup", "joint"):
        problems.append(f"method.stage={s.stage!r}: use 'warmup' or 'joint'")
    if s.qformer_init not in ("pretrained", "random"):
        problems.append(f"method.qformer_init={s.qformer_init!r}: use 'pretrained' or 'random'")
    if not (isinstance(s.warmup_epochs, int | float) and math.isfinite(s.warmup_epochs)) or (s.warmup_epochs < 0):
        problems.append(f"method.warmup_epochs={s.warmup_epochs}: must be >= 0 (0: no warm-up)")
    if not (isinstance(s.warmup_lr_scale, int | float) and s.warmup_lr_scale > 0):
        problems.append(f"method.warmup_lr_scale={s.warmup_lr_scale}: must be > 0")
    return problems


class VpgTrans(Method):
    name = "vpgtrans"
    description = "VPGTrans: warm up the (converter-initialised) projector, then tune Q-Former + projector; LLM frozen"
    trains = "warm-up: the projector; joint: the Q-Former, its queries, ln_vision and the projector (LLM frozen)"
    settings_class = VpgTransSettings
    joint_description: ClassVar[str] = (
        "Q-Former, queries, ln_vision and projector at the base learning rate, LLM frozen"
    )

    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        if self.settings.qformer_init == "random":
            reinitialise_qformer(vpg)
        return llm

    def is_trainable(self, name: str, default: bool) -> bool:
        if self.settings.stage == "warmup":
            return name.startswith("connector.") and default
        if name.startswith(QFORMER_PREFIXES):
            return True
        if self.settings.tune_ln_vision and name.startswith(LN_VISION_PREFIX):
            return True
        return default

    def stages(self) -> tuple[Stage, ...]:
        s = self.settings
        joint = Stage("joint", self.joint_description, {"method.stage": "joint"})
        if s.warmup_epochs == 0:
            return (joint,)
        warmup = Stage(
            "warmup",
            f"the projector alone, {s.warmup_lr_scale:g}x the base learning rate, constant, {s.warmup_epochs:g} epoch(s)",
            lambda cfg: {
                "method.stage": "warmup",
                "train.lr": s.warmup_lr_scale * cfg.train.lr,
                "train.connector_lr": s.warmup_lr_scale * (cfg.train.connector_lr or cfg.train.lr),
                "train.schedule": "constant",
                "train.warmup_steps": 0,
                "train.epochs": s.warmup_epochs,
                "train.max_steps": None,
            },
        )
        return (warmup, joint)

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any]:
        # The reference's recipe at the miniature's scale: no extra queries (VPGTrans tunes the 16 originals), one
        # base rate for Q-Former and projector (the zoo's BLIP-2 generative stage trained them at 1e-3), the
        # warm-up at 5x it; the quickstart starts the projector from the merged converter init.
        return {
            "settings": {"warmup_epochs": 1.0, "warmup_lr_scale": 5.0, "tune_ln_vision": True},
            "lr": 1e-3,
            "connector_lr": 1e-3,
            "num_extra_queries": 0,
            "transfer": True,
            "speedup": True,
            "frozen_llm": True,
        }

    def describe(self) -> str:
        fields = dataclasses.asdict(self.settings)
        return f"{self.name} " + " ".join(f"{k}={v}" for k, v in fields.items())


@torch.no_grad()
def reinitialise_qformer(vpg: nn.Module, std: float | None = None) -> None:
    """Re-draw the Q-Former's weights and its queries as BLIP-2 initialises them before pretraining: Linear and
    embedding weights ~ N(0, initializer_range), biases 0, LayerNorm 1/0; queries ~ N(0, initializer_range).
    Runs under the caller's seed (``VisionLLM.compose`` seeds the method's ``apply``)."""
    std = std if std is not None else float(getattr(vpg.qformer.config, "initializer_range", 0.02))
    for module in vpg.qformer.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            module.weight.normal_(0.0, std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
    vpg.query_tokens.normal_(0.0, std)


register_method(VpgTrans)
