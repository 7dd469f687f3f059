"""The one owner of the miniature world's folder layout (also the layout ``vict eval --data DIR`` reads).

``DIR``::

    images/<id>.png                                         size x size RGB
    annotations/captions_{split}.json                       COCO captions; 5 per image, the first flagged "dense": true
    annotations/{split}_balanced_questions.json             GQA questions (+ a "semantic" program each)
    annotations/scenes.json                                 the ground-truth scene of every image
    summary.json                                            counts by split and question type, blind baselines

Dense-caption convention: in every image's captions (file order, and hence ``ImageRecord.captions``) the first one,
index ``DENSE_CAPTION_INDEX``, is the dense caption naming every object with size, colour, shape and position; its
COCO annotation also carries ``"dense": true``.

The generator writes these files, ``vict.data.dataset.load_world_split`` reads them back through the real
loaders; this module imports neither.
"""

from __future__ import annotations

from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "val", "test")
DENSE_CAPTION_INDEX = 0
ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
SCENES_FILE = "scenes.json"
SUMMARY_FILE = "summary.json"


def world_files(root: str | Path, split: str, check_split: bool = True) -> dict[str, Path]:
    """Paths of one split's files: ``captions``, ``questions``, ``images_dir``.

    ``check_split``: a ``ValueError`` for a split the generator does not write (``False`` for folders in the
    same layout with other split names, e.g. real data prepared for ``vict eval --data``).
    """
    if check_split and split not in SPLITS:
        raise ValueError(f"split={split!r}: the world has splits {list(SPLITS)}")
    root = Path(root)
    return {
        "captions": root / ANNOTATIONS_DIR / f"captions_{split}.json",
        "questions": root / ANNOTATIONS_DIR / f"{split}_balanced_questions.json",
        "images_dir": root / IMAGES_DIR,
    }
