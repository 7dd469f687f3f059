"""Texts to fit a word converter on: a plain text file (one text per line), a COCO captions file, or a world.

Every reader names the file and the record on bad input; empty lines are skipped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_texts(path: Path) -> list[str]:
    """The texts of ``path``: a COCO captions ``.json`` (``annotations[].caption``) or a text file, one per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (give a text file, one text per line, or a COCO captions json)")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        annotations = data.get("annotations") if isinstance(data, dict) else None
        if not isinstance(annotations, list):
            raise ValueError(f"{path}: expected a COCO captions object with an 'annotations' list")
        texts = []
        for i, ann in enumerate(annotations):
            caption = ann.get("caption") if isinstance(ann, dict) else None
            if not isinstance(caption, str):
                raise ValueError(f"{path}: annotations[{i}] = {ann!r} has no string 'caption'")
            if caption.strip():
                texts.append(caption.strip())
    else:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{path}: holds no text")
    return texts


def world_texts(world_dir: Path, split: str = "train") -> list[str]:
    """The captions of a world split (``vict data world``), the default texts of the miniature."""
    from vict.data.world.layout import world_files

    return read_texts(world_files(Path(world_dir), split, check_split=False)["captions"])
