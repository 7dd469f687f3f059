"""The one owner of the miniature world's folder layout (also the layout ``vict eval --data DIR`` reads).

``DIR``::

    images/<id>.png                                         size x size RGB
    annotations/captions_{split}.json                       COCO captions; 5 per image, the first flagged "dense": true
    annotations/{split}_balanced_questions.json             GQA questions (+ a "semantic" program each)
    annotations/scenes.json                                 the ground-truth scene of every image
    scienceqa/problems.json                                 ScienceQA-mini problems (official ScienceQA schema)
    scienceqa/pid_splits.json                               {"train": [pid, ...], "val": [...], "test": [...]}
    scienceqa/images/{split}/{pid}/image.png                the world image of each problem that has one
    vqav2/v2_OpenEnded_mscoco_{split}_questions.json        VQA v2 questions, val and test only
    vqav2/v2_mscoco_{split}_annotations.json                VQA v2 annotations (ten human answers each)
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
SCIENCEQA_DIR = "scienceqa"
VQAV2_DIR = "vqav2"
VQAV2_SPLITS: tuple[str, ...] = ("val", "test")
"""The splits the world also writes in the VQA v2 format (the held-out ones)."""
GENERATED_DIRS: tuple[str, ...] = (IMAGES_DIR, ANNOTATIONS_DIR, SCIENCEQA_DIR, VQAV2_DIR)
"""Every folder the generator writes (and ``--overwrite`` replaces), besides ``SUMMARY_FILE``."""


def world_files(root: str | Path, split: str, check_split: bool = True) -> dict[str, Path]:
    """Paths of one split's files: ``captions``, ``questions``, ``images_dir``; also ``scienceqa_problems``,
    ``scienceqa_pid_splits``, ``scienceqa_images_dir`` (one set for all splits, see ``scienceqa_files``) and
    ``vqav2_questions``, ``vqav2_annotations`` (written for ``VQAV2_SPLITS`` only, see ``vqav2_files``).

    ``check_split``: a ``ValueError`` for a split the generator does not write (``False`` for folders in the
    same layout with other split names, e.g. real data prepared for ``vict eval --data``).
    """
    if check_split and split not in SPLITS:
        raise ValueError(f"split={split!r}: the world has splits {list(SPLITS)}")
    root = Path(root)
    return (
        {
            "captions": root / ANNOTATIONS_DIR / f"captions_{split}.json",
            "questions": root / ANNOTATIONS_DIR / f"{split}_balanced_questions.json",
            "images_dir": root / IMAGES_DIR,
        }
        | {f"scienceqa_{k}": v for k, v in scienceqa_files(root).items()}
        | {f"vqav2_{k}": v for k, v in vqav2_files(root, split, check_split=False).items()}
    )


def scienceqa_files(root: str | Path) -> dict[str, Path]:
    """ScienceQA-mini in the official layout: ``problems``, ``pid_splits`` and ``images_dir`` (which holds
    ``{split}/{pid}/image.png``; pass it as ``image_root`` to ``vict.data.scienceqa.load_scienceqa``)."""
    sqa = Path(root) / SCIENCEQA_DIR
    return {"problems": sqa / "problems.json", "pid_splits": sqa / "pid_splits.json", "images_dir": sqa / "images"}


def vqav2_files(root: str | Path, split: str, check_split: bool = True) -> dict[str, Path]:
    """The VQA v2 ``questions`` and ``annotations`` files of ``split`` (the official names with the split in place of
    ``val2014``). ``check_split``: a ``ValueError`` for a split not in ``VQAV2_SPLITS``."""
    if check_split and split not in VQAV2_SPLITS:
        raise ValueError(f"split={split!r}: the world writes VQA v2 files for {list(VQAV2_SPLITS)} only")
    vqa = Path(root) / VQAV2_DIR
    return {
        "questions": vqa / f"v2_OpenEnded_mscoco_{split}_questions.json",
        "annotations": vqa / f"v2_mscoco_{split}_annotations.json",
    }
