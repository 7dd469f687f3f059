"""Scorers (pure functions over plain dicts/lists) and the Q-Former similarity analysis.

- ``score_captions`` (COCO caption metrics via pycocoevalcap), ``score_gqa`` (official / vqa rules),
  ``score_vqav2`` (official VQA v2 accuracy) and the VQA normalisation helpers;
- ``max_cosine_similarity`` and friends for the visual-token / vocabulary analysis.

Names are imported lazily so that ``import vict.eval`` does not pull in torch or pycocoevalcap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ScoreError": "vict.eval.predictions",
    "score_captions": "vict.eval.captioning",
    "score_gqa": "vict.eval.gqa",
    "gqa_correct": "vict.eval.gqa",
    "score_vqav2": "vict.eval.vqa",
    "vqa_accuracy": "vict.eval.vqa",
    "normalize_answer": "vict.eval.vqa",
    "process_punctuation": "vict.eval.vqa",
    "process_digit_article": "vict.eval.vqa",
    "max_cosine_similarity": "vict.eval.similarity",
    "similarity_stats": "vict.eval.similarity",
    "plot_similarity_histogram": "vict.eval.similarity",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vict.eval' has no attribute {name!r}")
