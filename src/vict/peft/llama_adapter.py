"""LLaMA-Adapter (zero-init gated adaption prompts), via peft's ``AdaptionPromptConfig``."""

from __future__ import annotations

from peft import AdaptionPromptConfig
from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG
from torch import nn

from vict.peft import PeftSettings


def supported_model_types() -> list[str]:
    """The ``config.model_type`` values that the installed peft's AdaptionPrompt supports."""
    return sorted(TRANSFORMERS_MODEL_CONFIG)


def llama_adapter_config(settings: PeftSettings, llm: nn.Module) -> AdaptionPromptConfig:
    """The peft ``AdaptionPromptConfig`` for ``settings`` (``adapter_len``, ``adapter_layers``) on ``llm``.

    Raises ``ValueError`` when ``llm``'s architecture is not one peft's AdaptionPrompt supports (it patches
    specific attention classes), or when ``adapter_layers`` exceeds the LLM's depth.
    """
    model_type = getattr(getattr(llm, "config", None), "model_type", None)
    supported = supported_model_types()
    if model_type not in supported:
        raise ValueError(
            f"peft.type='llama_adapter' does not support LLM architecture model_type={model_type!r}: peft's "
            f"AdaptionPrompt supports only {supported}. Use peft.type='lora' for this LLM, or a model of one "
            "of those families."
        )
    n_layers = getattr(llm.config, "num_hidden_layers", None)
    if n_layers is not None and settings.adapter_layers > n_layers:
        raise ValueError(
            f"peft.adapter_layers={settings.adapter_layers} exceeds the LLM's {n_layers} layers; "
            f"set peft.adapter_layers <= {n_layers}"
        )
    return AdaptionPromptConfig(
        adapter_len=settings.adapter_len,
        adapter_layers=settings.adapter_layers,
        task_type="CAUSAL_LM",
    )
