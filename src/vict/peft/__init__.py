"""Parameter-efficient deltas for the frozen LLM: settings, peft config builders, the trainable predicate."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

PEFT_TYPES = ("lora", "llama_adapter", "none")


@dataclass
class PeftSettings:
    """What trainable delta goes into the frozen LLM (field names are shared with the YAML config).

    Attributes:
        type: ``"lora"`` (peft ``LoraConfig``), ``"llama_adapter"`` (peft ``AdaptionPromptConfig``:
            LLaMA-Adapter's zero-init gated adaption prompts) or ``"none"`` (only queries + projection train).
        r: LoRA rank.
        alpha: LoRA scaling numerator (the delta is scaled by ``alpha / r``).
        dropout: dropout on the LoRA input (active only in training mode).
        target_modules: module names LoRA wraps, e.g. ``["q_proj", "v_proj"]``.
        adapter_len: number of adaption-prompt tokens per adapted layer (llama_adapter).
        adapter_layers: number of top layers that get adaption prompts (llama_adapter).
    """

    type: str = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    adapter_len: int = 10
    adapter_layers: int = 2

    def __post_init__(self) -> None:
        problems = []
        if self.type not in PEFT_TYPES:
            problems.append(f"peft.type={self.type!r}: use one of {list(PEFT_TYPES)}")
        if self.r < 1:
            problems.append(f"peft.r={self.r}: the LoRA rank must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"peft.dropout={self.dropout}: must be in [0, 1)")
        if self.type == "lora" and not self.target_modules:
            problems.append("peft.target_modules is empty: name the modules LoRA wraps, e.g. ['q_proj', 'v_proj']")
        if self.adapter_len < 1:
            problems.append(f"peft.adapter_len={self.adapter_len}: must be >= 1")
        if self.adapter_layers < 1:
            problems.append(f"peft.adapter_layers={self.adapter_layers}: must be >= 1")
        if problems:
            raise ValueError("invalid PEFT settings:\n  " + "\n  ".join(problems))
        self.target_modules = list(self.target_modules)

    @classmethod
    def from_dict(cls, data: dict) -> PeftSettings:
        """Build from a plain dict (e.g. a ``config.json`` section); unknown keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PEFT setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


__all__ = ["PEFT_TYPES", "PeftSettings", "apply_peft"]


def apply_peft(llm: nn.Module, settings: PeftSettings) -> nn.Module:
    """Wrap a bare causal LM with the PEFT delta ``settings`` describes; ``type="none"`` returns it unchanged.

    Returns a ``peft.PeftModelForCausalLM`` for ``lora``/``llama_adapter``. Raises ``ValueError`` naming the
    problem for unmatched LoRA targets or an architecture AdaptionPrompt does not support.
    """
    if settings.type == "none":
        return llm
    from peft import get_peft_model

    if settings.type == "lora":
        from vict.peft.lora import lora_config

        config = lora_config(settings, llm)
    else:
        from vict.peft.llama_adapter import llama_adapter_config

        config = llama_adapter_config(settings, llm)
    return get_peft_model(llm, config)
