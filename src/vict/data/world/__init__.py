"""The miniature world: procedurally generated scenes written in the official COCO and GQA formats.

``generate_world(out, images, seed, size)`` writes it (see ``generate.py`` for the layout and splits);
``load_world_split(root, split)`` reads a split back through the real COCO/GQA loaders.

Dense-caption convention: in every image's captions (file order, and hence ``ImageRecord.captions``) the
first one, index ``DENSE_CAPTION_INDEX``, is the dense caption naming every object with size, colour, shape
and position; its COCO annotation also carries ``"dense": true``.
"""

from __future__ import annotations

from pathlib import Path

from vict.data.policy import BadInputPolicy
from vict.data.records import ImageRecord
from vict.data.world.generate import SPLITS, generate_world, split_sizes

DENSE_CAPTION_INDEX = 0

__all__ = ["DENSE_CAPTION_INDEX", "SPLITS", "generate_world", "load_world_split", "split_sizes", "world_files"]


def world_files(root: str | Path, split: str) -> dict[str, Path]:
    """Paths of one split's files: ``captions``, ``questions``, ``images_dir``; ValueError for a bad split."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: the world has splits {list(SPLITS)}")
    root = Path(root)
    return {
        "captions": root / "annotations" / f"captions_{split}.json",
        "questions": root / "annotations" / f"{split}_balanced_questions.json",
        "images_dir": root / "images",
    }


def load_world_split(root: str | Path, split: str, *, policy: BadInputPolicy | str | None = None) -> list[ImageRecord]:
    """Records of one world split (captions and QAs per image, ``image_path`` set), in image-id order."""
    from vict.data.dataset import load_dataset

    files = world_files(root, split)
    if not files["captions"].is_file():
        raise FileNotFoundError(
            f"{files['captions']} not found: {root} is not a generated world; "
            f"create one with `vict data world --out {root} --images 200 --seed 0`"
        )
    loaded = load_dataset(files["captions"], files["questions"], files["images_dir"], keep="any", policy=policy)
    return loaded.records
