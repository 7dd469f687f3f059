"""LoRA on the frozen LLM, via peft's ``LoraConfig`` (wrapped, not forked): ``W x + (alpha / r) B A x``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from vict.methods.peft_base import PeftMethod
from vict.registry import register_method
from vict.settings import help_field, raise_problems

LLAMA_LINEAR_LAYERS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a LLaMA block."""


@dataclass
class LoraSettings:
    """LoRA's rank, scale, dropout and the linear layers it adapts."""

    r: int = help_field("LoRA rank", default=8)
    alpha: int = help_field("LoRA scaling numerator (the delta is scaled by alpha / r)", default=16)
    dropout: float = help_field("dropout on the LoRA input (active only in training mode)", default=0.05)
    target_modules: list[str] = help_field(
        "names of the linear layers LoRA wraps, e.g. [q_proj, v_proj]", default_factory=lambda: ["q_proj", "v_proj"]
    )

    def __post_init__(self) -> None:
        raise_problems(lora_problems(self), "invalid LoRA settings")
        self.target_modules = list(self.target_modules)


def lora_problems(s: Any) -> list[str]:
    """The problems of LoRA fields ``r``, ``dropout`` and ``target_modules`` of a settings object (shared by every
    method that carries a LoRA delta)."""
    problems = []
    if s.r < 1:
        problems.append(f"method.r={s.r}: the LoRA rank must be >= 1")
    if not 0.0 <= s.dropout < 1.0:
        problems.append(f"method.dropout={s.dropout}: must be in [0, 1)")
    if not s.target_modules:
        problems.append("method.target_modules is empty: name the modules LoRA wraps, e.g. [q_proj, v_proj]")
    return problems


class Lora(PeftMethod):
    name = "lora"
    description = "LoRA: trainable low-rank updates of the LLM's linear layers (peft LoraConfig)"
    trains = "the LoRA A/B matrices of method.target_modules, the extra queries and the connector"
    settings_class = LoraSettings
    markers = (
        ".lora_A.",
        ".lora_B.",
        ".lora_embedding_A.",
        ".lora_embedding_B.",
        ".lora_magnitude_vector.",
        ".lora_dropout.",
    )

    def peft_config(self, llm: nn.Module) -> Any:
        """The peft ``LoraConfig``; every target name must match a linear layer of ``llm`` (else a ``ValueError``
        lists the unmatched names and the linear-layer names the model has)."""
        from peft import LoraConfig

        s = self.settings
        leaf_names = {name.rsplit(".", 1)[-1] for name, mod in llm.named_modules() if isinstance(mod, nn.Linear)}
        missing = [t for t in s.target_modules if t not in leaf_names]
        if missing:
            raise ValueError(
                f"method.target_modules {missing} match no linear layer of {type(llm).__name__}; "
                f"its linear layers are named {sorted(leaf_names)} (set method.target_modules to some of these)"
            )
        return LoraConfig(
            r=s.r,
            lora_alpha=s.alpha,
            lora_dropout=s.dropout,
            target_modules=list(s.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any]:
        # Rank 16 on every linear layer of the tiny LLaMA (docs/tuning.md: q/v-only LoRA trained to a higher loss
        # and lower GQA accuracy in the same 800 steps).
        return {
            "settings": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": list(LLAMA_LINEAR_LAYERS)},
            "lr": 5e-3,
        }


register_method(Lora)
