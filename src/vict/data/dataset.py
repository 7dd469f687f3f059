"""Load captions and questions about the same images into one record per image.

Captions are keyed by COCO image id. Questions are keyed by GQA ``imageId``: with a Visual Genome
``image_data.json`` those are VG ids, mapped to COCO ids through ``coco_id``; without it, ids are joined
as they are (the miniature world shares ids between its COCO and GQA files). The ``JoinReport`` says how
many images have both kinds of annotation, only captions, only questions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vict.data.coco import load_coco_captions
from vict.data.gqa import load_gqa_questions
from vict.data.policy import BadInputPolicy, SkipReport, resolve_policy
from vict.data.records import ImageRecord
from vict.data.vg import load_vg_coco_ids
from vict.data.world.layout import world_files

logger = logging.getLogger("vict.data")

PathsArg = str | Path | Sequence[str | Path] | None
Keep = Literal["any", "both", "captions", "questions"]


@dataclass
class JoinReport:
    """How captions and questions met. ``questions_unmapped``: question images with no COCO id in VG
    (kept as question-only records with id ``"vg:<id>"``), a subset of ``questions_only``."""

    both: int = 0
    captions_only: int = 0
    questions_only: int = 0
    questions_unmapped: int = 0
    kept: int = 0

    def summary(self) -> str:
        text = (
            f"images with captions and questions: {self.both}; captions only: {self.captions_only}; "
            f"questions only: {self.questions_only}"
        )
        if self.questions_unmapped:
            text += f" (of which {self.questions_unmapped} have no COCO id in VG image_data.json)"
        return text + f"; kept: {self.kept}"

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LoadedData:
    """Records plus what happened while loading them."""

    records: list[ImageRecord]
    join: JoinReport
    skips: SkipReport = field(default_factory=SkipReport)


def _paths(arg: PathsArg) -> list[Path]:
    if arg is None:
        return []
    if isinstance(arg, str | Path):
        return [Path(arg)]
    return [Path(p) for p in arg]


def join_records(
    caption_records: Sequence[ImageRecord],
    question_records: Sequence[ImageRecord],
    vg_to_coco: dict[str, str] | None = None,
    keep: Keep = "any",
) -> tuple[list[ImageRecord], JoinReport]:
    """Merge caption-only and question-only records of the same image (see module doc).

    Order: caption records in their order, then question-only records in theirs. The merged record keeps
    the caption side's ``image_path`` when it has one.
    """
    if keep not in ("any", "both", "captions", "questions"):
        raise ValueError(f"keep={keep!r}: use 'any', 'both', 'captions' or 'questions'")
    report = JoinReport()
    merged: dict[str, ImageRecord] = {}
    for rec in caption_records:
        if rec.image_id in merged:
            merged[rec.image_id].captions.extend(rec.captions)
        else:
            merged[rec.image_id] = ImageRecord(rec.image_id, rec.image_path, list(rec.captions), list(rec.qas))
    has_questions: set[str] = set()
    for rec in question_records:
        key = rec.image_id
        if vg_to_coco is not None:
            if key in vg_to_coco:
                key = vg_to_coco[key]
            else:
                key = f"vg:{key}"
                report.questions_unmapped += 1
        has_questions.add(key)
        target = merged.get(key)
        if target is None:
            merged[key] = ImageRecord(key, rec.image_path, [], list(rec.qas))
        else:
            target.qas.extend(rec.qas)
            if target.image_path is None:
                target.image_path = rec.image_path
    out = []
    for key, rec in merged.items():
        has_c, has_q = bool(rec.captions), key in has_questions
        report.both += has_c and has_q
        report.captions_only += has_c and not has_q
        report.questions_only += has_q and not has_c
        wanted = {"any": True, "both": has_c and has_q, "captions": has_c, "questions": has_q}[keep]
        if wanted:
            out.append(rec)
    report.kept = len(out)
    return out, report


def load_dataset(
    captions: PathsArg = None,
    questions: PathsArg = None,
    images_dir: str | Path | None = None,
    vg_image_data: str | Path | None = None,
    *,
    question_images_dir: str | Path | None = None,
    karpathy_split: str | None = None,
    keep: Keep = "any",
    balanced_only: bool = False,
    require_answer: bool = True,
    policy: BadInputPolicy | str | None = None,
) -> LoadedData:
    """Load caption files and question files and join them per image.

    Args:
        captions: one or more COCO caption files (official / Karpathy / LAVIS; see ``load_coco_captions``).
        questions: one or more GQA question files (official, streamed, or LAVIS lists).
        images_dir: folder the caption files' image names are relative to (and the GQA images folder too,
            unless ``question_images_dir`` is given).
        vg_image_data: VG ``image_data.json`` to map GQA (VG) image ids to COCO ids; ``None`` joins ids as is.
        karpathy_split: ``train`` (incl. restval) / ``val`` / ``test`` when a caption file is Karpathy's.
        keep: which records to return: ``any`` (default), ``both`` (captions and questions), ``captions``,
            ``questions``.
        balanced_only, require_answer: passed to ``load_gqa_questions``.
        policy: bad-input policy (default fail fast); its ``report`` is returned as ``skips`` and logged at the
            end. Every record is type-checked by its loader (``check_coco_captions``, ``check_gqa_question``,
            ``load_vg_coco_ids``): fail raises the first bad record naming file, record and field; skip leaves it
            out and counts it. A file of the wrong shape raises under both. Images are not opened here (the
            collator checks them as it loads them; ``vict.data.images.check_images`` decodes them all up front).
    """
    if not captions and not questions:
        raise ValueError("nothing to load: give caption files, question files, or both")
    policy = resolve_policy(policy)
    cap_records: list[ImageRecord] = []
    for path in _paths(captions):
        cap_records += load_coco_captions(path, images_dir, split=karpathy_split, policy=policy)
    q_records: list[ImageRecord] = []
    q_images = question_images_dir if question_images_dir is not None else images_dir
    for path in _paths(questions):
        q_records += load_gqa_questions(
            path, q_images, policy=policy, balanced_only=balanced_only, require_answer=require_answer
        )
    vg_map = load_vg_coco_ids(vg_image_data, policy=policy) if vg_image_data is not None else None
    records, join = join_records(cap_records, q_records, vg_map, keep=keep)
    logger.info("loaded %d records: %s", len(records), join.summary())
    if policy.report:
        logger.warning("%s", policy.report.summary())
    return LoadedData(records=records, join=join, skips=policy.report)


def load_records(
    captions: PathsArg = None,
    questions: PathsArg = None,
    images_dir: str | Path | None = None,
    vg_image_data: str | Path | None = None,
    *,
    world: str | Path | None = None,
    split: str | None = None,
    **kwargs,
) -> list[ImageRecord]:
    """Records for training or evaluation: ``load_dataset(...).records``, or a world split.

    ``load_records(world="world", split="train")`` is the miniature-world shortcut (``load_world_split``);
    otherwise see ``load_dataset`` for the arguments (``split`` then means the Karpathy split of a
    ``dataset_coco.json``).
    """
    if world is not None:
        if captions or questions:
            raise ValueError("give either world=DIR or caption/question files, not both")
        return load_world_split(world, split or "train", **kwargs)
    return load_dataset(captions, questions, images_dir, vg_image_data, karpathy_split=split, **kwargs).records


def load_world_split(root: str | Path, split: str, *, policy: BadInputPolicy | str | None = None) -> list[ImageRecord]:
    """Records of one split of a world folder (``vict.data.world.layout``): captions and QAs per image,
    ``image_path`` set, in image-id order, read through the real COCO/GQA loaders."""
    files = world_files(root, split)
    if not files["captions"].is_file():
        raise FileNotFoundError(
            f"{files['captions']} not found: {root} is not a generated world; "
            f"create one with `vict data world --out {root} --images 200 --seed 0`"
        )
    loaded = load_dataset(files["captions"], files["questions"], files["images_dir"], keep="any", policy=policy)
    return loaded.records
