"""Data: loaders (COCO captions, GQA questions, VG join), the miniature world, VICT instructions, collation.

Names are imported lazily (``vict.data.VictCollator`` imports torch only when first used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "QA": "vict.data.records",
    "ImageRecord": "vict.data.records",
    "BadInputPolicy": "vict.data.policy",
    "SkipReport": "vict.data.policy",
    "DataError": "vict.data.policy",
    "BadImageError": "vict.data.policy",
    "MalformedJSONError": "vict.data.policy",
    "MissingFieldError": "vict.data.policy",
    "WrongTypeError": "vict.data.policy",
    "EmptyFieldError": "vict.data.policy",
    "UnknownImageError": "vict.data.policy",
    "SkippedImageError": "vict.data.policy",
    "FileShapeError": "vict.data.policy",
    "check_coco_captions": "vict.data.coco",
    "check_gqa_question": "vict.data.gqa",
    "check_images": "vict.data.images",
    "load_coco_captions": "vict.data.coco",
    "load_gqa_questions": "vict.data.gqa",
    "iter_gqa_questions": "vict.data.gqa",
    "load_vg_coco_ids": "vict.data.vg",
    "load_records": "vict.data.dataset",
    "load_dataset": "vict.data.dataset",
    "join_records": "vict.data.dataset",
    "JoinReport": "vict.data.dataset",
    "load_image": "vict.data.images",
    "Example": "vict.data.prompts",
    "InstructionBuilder": "vict.data.prompts",
    "ExampleStream": "vict.data.prompts",
    "KINDS": "vict.data.prompts",
    "STYLES": "vict.data.prompts",
    "load_templates": "vict.data.prompts",
    "VictCollator": "vict.data.collate",
    "generate_world": "vict.data.world",
    "load_world_split": "vict.data.dataset",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vict.data' has no attribute {name!r}")
