"""Methods: how the frozen LLM is modified and what trains. One folder per method, registered with one line.

Built-in: ``lora`` and ``llama_adapter`` (peft's LoRA and AdaptionPrompt, saved in peft's adapter format) and
``none`` (only the extra queries and the connector train). The contract is ``vict.methods.base.Method``;
``docs/extending.md`` walks through adding one. The registry lives in ``vict.registry``.
"""

from __future__ import annotations

from vict.registry import MethodSpec, get_method, method_names, register_method

__all__ = ["MethodSpec", "get_method", "method_names", "register_method"]
