"""LoRA on the frozen LLM, via peft's ``LoraConfig`` (wrapped, not forked)."""

from __future__ import annotations

from peft import LoraConfig
from torch import nn

from vict.peft import PeftSettings


def lora_config(settings: PeftSettings, llm: nn.Module | None = None) -> LoraConfig:
    """The peft ``LoraConfig`` for ``settings`` (``r``, ``alpha``, ``dropout``, ``target_modules``).

    When ``llm`` is given, every target name must match at least one module of it; otherwise a ``ValueError``
    lists the unmatched names and the linear-layer names the model does have.
    """
    if llm is not None:
        leaf_names = {name.rsplit(".", 1)[-1] for name, mod in llm.named_modules() if isinstance(mod, nn.Linear)}
        missing = [t for t in settings.target_modules if t not in leaf_names]
        if missing:
            raise ValueError(
                f"peft.target_modules {missing} match no linear layer of {type(llm).__name__}; "
                f"its linear layers are named {sorted(leaf_names)} (set peft.target_modules to some of these)"
            )
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
