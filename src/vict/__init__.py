"""vict: give any Hugging Face causal language model eyes, cheaply (Visual In-Context Tuning).

The public API is imported lazily so that ``import vict`` and ``vict --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "VisualPromptGenerator": "vict.models.vpg",
    "VisionLLM": "vict.models.vision_llm",
    "VisionLLMConfig": "vict.models.vision_llm",
    "build_tiny": "vict.models.builders",
    "build_paper": "vict.models.builders",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vict' has no attribute {name!r}")
