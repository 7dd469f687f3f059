"""LLaMA-Adapter (zero-init gated adaption prompts in the top layers), via peft's ``AdaptionPromptConfig``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from vict.methods.peft_base import PeftMethod
from vict.registry import register_method
from vict.settings import help_field, raise_problems


@dataclass
class LlamaAdapterSettings:
    """How many adaption-prompt tokens, in how many of the top layers."""

    adapter_len: int = help_field("adaption-prompt tokens per adapted layer", default=10)
    adapter_layers: int = help_field("number of top layers that get adaption prompts", default=2)

    def __post_init__(self) -> None:
        problems = []
        if self.adapter_len < 1:
            problems.append(f"method.adapter_len={self.adapter_len}: must be >= 1")
        if self.adapter_layers < 1:
            problems.append(f"method.adapter_layers={self.adapter_layers}: must be >= 1")
        raise_problems(problems, "invalid LLaMA-Adapter settings")


def supported_model_types() -> list[str]:
    """The ``config.model_type`` values that the installed peft's AdaptionPrompt supports."""
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    return sorted(TRANSFORMERS_MODEL_CONFIG)


class LlamaAdapter(PeftMethod):
    name = "llama_adapter"
    description = "LLaMA-Adapter: zero-init gated adaption prompts in the LLM's top layers (peft AdaptionPrompt)"
    trains = (
        "the adaption prompts and gates of the top method.adapter_layers layers, the extra queries and the connector"
    )
    settings_class = LlamaAdapterSettings
    markers = (".adaption_prompt", ".adaption_gate")

    def peft_config(self, llm: nn.Module) -> Any:
        """The peft ``AdaptionPromptConfig``; raises ``ValueError`` for an architecture peft's AdaptionPrompt does
        not support (it patches specific attention classes) or more adapted layers than the LLM has."""
        from peft import AdaptionPromptConfig

        s = self.settings
        model_type = getattr(getattr(llm, "config", None), "model_type", None)
        supported = supported_model_types()
        if model_type not in supported:
            raise ValueError(
                f"method.type='llama_adapter' does not support LLM architecture model_type={model_type!r}: peft's "
                f"AdaptionPrompt supports only {supported}. Use method.type='lora' for this LLM, or a model of one "
                "of those families."
            )
        n_layers = getattr(llm.config, "num_hidden_layers", None)
        if n_layers is not None and s.adapter_layers > n_layers:
            raise ValueError(
                f"method.adapter_layers={s.adapter_layers} exceeds the LLM's {n_layers} layers; "
                f"set method.adapter_layers <= {n_layers}"
            )
        return AdaptionPromptConfig(adapter_len=s.adapter_len, adapter_layers=s.adapter_layers, task_type="CAUSAL_LM")

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any]:
        # Prompts in every layer of the tiny LLaMA; its zero-initialised gates need a larger step than LoRA
        # (docs/tuning.md).
        return {"settings": {"adapter_len": 10, "adapter_layers": int(llm_config["num_hidden_layers"])}, "lr": 5e-2}


register_method(LlamaAdapter)
