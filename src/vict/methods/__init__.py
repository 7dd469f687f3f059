"""Methods: how the frozen LLM is modified and what trains. One folder per method, registered with one line.

Built-in: ``lora`` and ``llama_adapter`` (peft's LoRA and AdaptionPrompt, saved in peft's adapter format),
``none`` (only the extra queries and the connector train), ``vpgtrans`` (VPGTrans's projector warm-up, then the
Q-Former tuned with the LLM frozen), ``vpgtrans_lora`` (the same warm-up, then VICT with LoRA), ``mm_adapter``
(LaVIN's adapters) and ``vlora`` (VLoRA's per-image weight deltas, no visual tokens). The contract is
``vict.methods.base.Method``; ``docs/extending.md`` walks through adding one. The registry lives in ``vict.registry``.
"""

from __future__ import annotations

from vict.registry import MethodSpec, get_method, method_names, register_method

__all__ = ["MethodSpec", "get_method", "method_names", "register_method"]
