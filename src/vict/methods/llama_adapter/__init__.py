"""LLaMA-Adapter (zero-init gated adaption prompts in the top layers), via peft's ``AdaptionPromptConfig``; with
``bias_tuning``, also LLaMA-Adapter V2's bias, scale and norm tuning (``bias_scale``), which peft does not offer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from vict.methods.base import decoder_body, switched
from vict.methods.llama_adapter.bias_scale import ATTRIBUTE, BiasScale, attach
from vict.methods.peft_base import PeftMethod
from vict.registry import register_method
from vict.settings import help_field, raise_problems


@dataclass
class LlamaAdapterSettings:
    """How many adaption-prompt tokens, in how many of the top layers."""

    adapter_len: int = help_field("adaption-prompt tokens per adapted layer", default=10)
    adapter_layers: int = help_field("number of top layers that get adaption prompts", default=2)
    bias_tuning: bool = help_field(
        "LLaMA-Adapter V2's bias, scale and norm tuning: every linear layer of every block computes s*(Wx+b) with a "
        "learned per-channel s (from 1) and b (from 0), and every norm gets a learned per-channel scale",
        default=False,
    )

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
        "the adaption prompts and gates of the top method.adapter_layers layers (with method.bias_tuning, also a "
        "scale and bias on every linear layer and a scale on every norm: LLaMA-Adapter V2), the extra queries and "
        "the connector"
    )
    settings_class = LlamaAdapterSettings
    markers = (".adaption_prompt", ".adaption_gate", f".{ATTRIBUTE}.")

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self._bias_scales: list[BiasScale] = []

    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        llm = super().apply(llm, vpg)
        if self.settings.bias_tuning:
            base = llm.get_base_model()
            body = decoder_body(base)
            if not hasattr(body, "layers"):
                raise ValueError(
                    f"method.bias_tuning=true adapts decoder blocks (body.layers), and {type(base).__name__} has none"
                )
            self._bias_scales = attach(body)
        return llm

    def saves(self, name: str) -> bool:
        # peft's adapter file holds the prompts and gates; V2's scales and biases go to vict_trainable.safetensors
        return super().saves(name) and f".{ATTRIBUTE}." not in f".{name}."

    @contextlib.contextmanager
    def delta_disabled(self, llm: nn.Module) -> Iterator[None]:
        with super().delta_disabled(llm), switched(self._bias_scales, False):
            yield

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
        # (docs/tuning.md). The `llama_adapter_v2` variant (row vict-llama_adapter_v2) adds V2's bias, scale and norm
        # tuning.
        settings = {"adapter_len": 10, "adapter_layers": int(llm_config["num_hidden_layers"])}
        return {
            "settings": settings,
            "lr": 5e-2,
            # V2's scales and biases move the frozen LM's own channels: at the prompts' 5e-2 they eroded its text
            # (held-out perplexity 16.7 against 3.4 at 1e-2) and answered less (57.4 against 64.4, docs/tuning.md)
            "variants": {"llama_adapter_v2": {"settings": {**settings, "bias_tuning": True}, "lr": 1e-2}},
        }


register_method(LlamaAdapter)
