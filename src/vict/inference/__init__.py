"""The inference layer: one ``Context`` (none / caption / QA pair / own caption), one feature cache, engines.

``VictEngine`` answers with a ``VisionLLM`` (``VictEngine.from_checkpoint(dir)``), ``Blip2Engine`` with a plain
BLIP-2; both take the same ``Context`` values. The CLI, the evaluation, the quickstart and the server call them.
"""

from __future__ import annotations

from vict.inference.context import CONTEXT_KINDS, PROMPT_KINDS, Context
from vict.inference.decoding import Completion, Decoding
from vict.inference.engine import MAX_NEW_TOKENS, Answer, VictEngine, make_collator, open_image

__all__ = [
    "CONTEXT_KINDS",
    "MAX_NEW_TOKENS",
    "PROMPT_KINDS",
    "Answer",
    "Completion",
    "Context",
    "Decoding",
    "VictEngine",
    "make_collator",
    "open_image",
]
