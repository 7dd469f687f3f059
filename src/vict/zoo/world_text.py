"""Read what the zoo trains on from a world folder written in the official COCO and GQA formats.

The zoo reads the annotation files directly (COCO ``captions_{split}.json``, GQA
``{split}_balanced_questions.json``) so that it works on any folder in those formats, the generated miniature
world or a hand-made stand-in, and checks every record it uses, naming the file and record on error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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


QA_TEXT_TEMPLATE = "Question: {} Short answer: {}"
"""Short answers are pretrained in the prompt style of the BLIP-2 baseline (``vict.eval.blip2_baseline``,
LAVIS's ``"Question: {} Short answer:"``), as a hub LM has seen question-answer text before it is asked."""


def split_texts(images: list[WorldImage]) -> list[str]:
    """Plain-text sentences of a split: every caption; every question with its sentence answer; every question
    with its short answer (``QA_TEXT_TEMPLATE``), once alone and once after one of the image's captions (the
    k-th question gets the k-th caption, cyclically), so the LM learns to answer from text context when the
    text holds the answer. Deterministic order (images, then annotations)."""
    texts: list[str] = []
    for im in images:
        texts.extend(im.captions)
        for k, (question, answer, full_answer) in enumerate(im.qas):
            texts.append(f"{question} {full_answer}")
            texts.append(QA_TEXT_TEMPLATE.format(question, answer))
            texts.append(f"{im.captions[k % len(im.captions)]} {QA_TEXT_TEMPLATE.format(question, answer)}")
    return texts


def load_pixels(images: list[WorldImage], image_processor) -> torch.Tensor:
    """All images of a split, preprocessed once: ``(n, 3, H, W)`` float32.

    ``image_processor`` is the ``BlipImageProcessor`` that is saved with the BLIP-2, so training sees exactly
    what a user of the saved checkpoint feeds it.
    """
    batches = []
    for start in range(0, len(images), 256):
        pil = []
        for im in images[start : start + 256]:
            if not im.path.is_file():
                raise FileNotFoundError(f"image {im.image_id}: {im.path} is missing; regenerate the world")
            with Image.open(im.path) as img:
                pil.append(np.asarray(img.convert("RGB")))
        out = image_processor(images=pil, return_tensors="pt")
        batches.append(out["pixel_values"].float())
    return torch.cat(batches)
