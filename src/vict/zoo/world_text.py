"""Read a world split's images, captions and questions from the official COCO and GQA files.

The zoo's measures on a world (the VPG probe, the held-out documents of text retention) read the annotation files
directly (COCO ``captions_{split}.json``, GQA ``{split}_balanced_questions.json``), so they work on any folder in
those formats, the generated miniature world or a hand-made stand-in, and check every record they use, naming the
file and record on error. (The zoo itself trains on the in-memory stream, never on a world.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vict.data.world.layout import world_files


@dataclass
class WorldImage:
    """One image of a split: its captions (COCO order) and question-answer triples."""

    image_id: str
    path: Path
    captions: list[str]
    qas: list[tuple[str, str, str]] = field(default_factory=list)
    """``(question, short answer, full-sentence answer)`` per GQA question on this image."""
    dense_index: int | None = None
    """Index in ``captions`` of the annotation flagged ``"dense": true`` (the world flags exactly one)."""

    @property
    def dense_caption(self) -> str:
        """The caption naming every object's size, colour, shape and position.

        ``vict data world`` flags it with ``"dense": true`` in the COCO annotation; for a folder without the
        flag, the caption with the most words (the others each omit attributes), first in COCO order on ties.
        """
        if self.dense_index is not None:
            return self.captions[self.dense_index]
        return max(self.captions, key=lambda c: (len(c.split()), -self.captions.index(c)))


def _load_json(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the zoo needs a world folder written by `vict data world --out DIR` "
            "(COCO captions_{{split}}.json and GQA {{split}}_balanced_questions.json under DIR/annotations)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); regenerate it with `vict data world`") from err


def load_split(world_dir: Path, split: str) -> list[WorldImage]:
    """The images of ``split`` with their captions and (if the GQA file exists) their questions.

    Args:
        world_dir: folder holding ``annotations/`` and ``images/``.
        split: ``train``, ``val`` or ``test``.

    Returns:
        Images sorted by id (as strings, numerically when they are numbers), each with >= 1 caption.
    """
    world_dir = Path(world_dir)
    files = world_files(world_dir, split, check_split=False)
    cap_path = files["captions"]
    coco = _load_json(cap_path)
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise ValueError(f"{cap_path}: expected a COCO captions object with 'images' and 'annotations' keys")
    images: dict[str, WorldImage] = {}
    for i, rec in enumerate(coco["images"]):
        if "id" not in rec or "file_name" not in rec:
            raise ValueError(f"{cap_path}: images[{i}] = {rec!r} lacks 'id' or 'file_name'")
        image_id = str(rec["id"])
        path = files["images_dir"] / rec["file_name"]
        if not path.is_file() and (world_dir / rec["file_name"]).is_file():
            path = world_dir / rec["file_name"]
        images[image_id] = WorldImage(image_id=image_id, path=path, captions=[])
    for i, ann in enumerate(coco["annotations"]):
        image_id = str(ann.get("image_id"))
        if image_id not in images or not isinstance(ann.get("caption"), str):
            raise ValueError(
                f"{cap_path}: annotations[{i}] = {ann!r} has no caption or names an image id not in 'images'"
            )
        if ann.get("dense") is True:
            images[image_id].dense_index = len(images[image_id].captions)
        images[image_id].captions.append(ann["caption"].strip())

    qa_path = files["questions"]
    if qa_path.is_file():
        questions = _load_json(qa_path)
        if not isinstance(questions, dict):
            raise ValueError(f"{qa_path}: expected a GQA object keyed by question id")
        for qid in sorted(questions):
            q = questions[qid]
            missing = [k for k in ("question", "imageId", "answer", "fullAnswer") if k not in q]
            if missing:
                raise ValueError(f"{qa_path}: question {qid!r} lacks {missing}")
            image = images.get(str(q["imageId"]))
            if image is not None:
                image.qas.append((q["question"], q["answer"], q["fullAnswer"]))

    empty = [i for i, im in images.items() if not im.captions]
    if empty:
        raise ValueError(f"{cap_path}: images {empty[:5]} have no caption; every image needs at least one")
    return [images[k] for k in sorted(images, key=lambda s: (len(s), s))]
