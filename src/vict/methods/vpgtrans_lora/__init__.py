"""``vpgtrans_lora``: VPGTrans's initialisation, then VICT's training (the two papers' ideas combined).

Recipe, as two chained stages (``Method.stages``, the same warm-up as ``vpgtrans``):
1. ``warmup``: only the projector trains, at ``warmup_lr_scale`` × the base rate, constant, ``warmup_epochs``
   passes, starting from the merged init converter ∘ source projector (``connector.init_weights``). The LoRA delta
   is in place but zero (B = 0) and frozen, so the LLM computes as the bare LLM; the extra queries are frozen.
2. ``joint`` (VICT's training instead of VPGTrans's "direct fine-tuning"): the Q-Former and its pretrained queries
   stay frozen; VICT's extra queries, the projector and a LoRA delta on the LLM (peft's ``LoraConfig``) train at
   the base rate with the run's schedule, on VICT's instructions.

Storage and switching the delta off are LoRA's (peft's adapter folder under ``adapter/``; ``disable_adapter``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from vict.methods.lora import LLAMA_LINEAR_LAYERS, Lora, lora_problems
from vict.methods.vpgtrans import LN_VISION_PREFIX, VpgTrans, vpgtrans_problems
from vict.registry import register_method
from vict.settings import help_field, raise_problems


@dataclass
class VpgTransLoraSettings:
    """VPGTrans's warm-up, then VICT's training: the warm-up's stage fields and the joint stage's LoRA delta."""

    stage: Literal["warmup", "joint"] = help_field(
        "what trains: `warmup` the projector alone, `joint` the extra queries, the projector and the LoRA delta "
        "(the recipe sets it per stage; set it yourself only to run one stage by hand)",
        default="joint",
    )
    warmup_epochs: float = help_field(
        "passes over the training images of the projector warm-up (0: no warm-up)", default=1.0
    )
    warmup_lr_scale: float = help_field(
        "the warm-up's constant learning rate, as a multiple of train.lr and train.connector_lr (the paper: 5)",
        default=5.0,
    )
    tune_ln_vision: bool = help_field(
        "the joint stage also tunes the vision tower's final layer norm (off: the VPG stays frozen, as VICT keeps it)",
        default=False,
    )
    qformer_init: Literal["pretrained"] = help_field(
        "the Q-Former stays the BLIP-2's (it is frozen here; only `pretrained` is meaningful)", default="pretrained"
    )
    r: int = help_field("LoRA rank of the joint stage's delta", default=8)
    alpha: int = help_field("LoRA scaling numerator (the delta is scaled by alpha / r)", default=16)
    dropout: float = help_field("dropout on the LoRA input (active only in training mode)", default=0.05)
    target_modules: list[str] = help_field(
        "names of the linear layers LoRA wraps, e.g. [q_proj, v_proj]", default_factory=lambda: ["q_proj", "v_proj"]
    )

    def __post_init__(self) -> None:
        problems = vpgtrans_problems(self) + lora_problems(self)
        if self.qformer_init == "random":
            problems.append(
                "method.qformer_init='random': vpgtrans_lora keeps the Q-Former frozen, so a random one would never "
                "learn; use method.type=vpgtrans for the from-scratch baseline"
            )
        raise_problems(problems, "invalid VPGTrans + LoRA settings")
        self.target_modules = list(self.target_modules)


class VpgTransLora(VpgTrans, Lora):
    """VPGTrans's warm-up (``VpgTrans.stages``), then LoRA with extra queries (``Lora``'s delta, storage, switch)."""

    name = "vpgtrans_lora"
    description = "VPGTrans init + VICT training: warm up the merged projector, then extra queries + projector + LoRA"
    trains = "warm-up: the projector; joint: the extra queries, the projector and LoRA on the LLM (Q-Former frozen)"
    settings_class = VpgTransLoraSettings
    markers = Lora.markers
    joint_description = "extra queries, projector and LoRA at the base learning rate, Q-Former frozen"

    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        # the LoRA delta is in place from the warm-up on (zero, frozen there), so both stages' checkpoints hold it
        return Lora.apply(self, llm, vpg)

    def is_trainable(self, name: str, default: bool) -> bool:
        if self.settings.stage == "warmup":
            return name.startswith("connector.") and default
        if self.settings.tune_ln_vision and name.startswith(LN_VISION_PREFIX):
            return True
        return default or self.owns(name)

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any]:
        # vict-lora's delta and rate (rank 16 on every linear layer, 5e-3), VPGTrans's projector rate (1e-3, warmed
        # up at 5x from the merged init); the preset's extra queries. No from-scratch baseline of its own: its
        # validation loss is on VICT's instructions, not comparable with the frozen-LLM curves of the speed-up.
        return {
            "settings": {
                "warmup_epochs": 1.0,
                "warmup_lr_scale": 5.0,
                "r": 16,
                "alpha": 32,
                "dropout": 0.05,
                "target_modules": list(LLAMA_LINEAR_LAYERS),
            },
            "lr": 5e-3,
            "connector_lr": 1e-3,
            "transfer": True,
        }

    def describe(self) -> str:
        fields = dataclasses.asdict(self.settings)
        return f"{self.name} " + " ".join(f"{k}={v}" for k, v in fields.items())


register_method(VpgTransLora)
