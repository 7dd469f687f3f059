"""What ``vict eval`` evaluates: the images, their gold captions and their GQA questions, from either source.

- ``load_eval_split(data_dir, split)``: a folder in the miniature world's layout (``vict data world``).
- ``load_eval_files(captions=..., questions=..., images_dir=...)``: real data through the data loaders
  (``vict.data.dataset.load_dataset``): COCO captions in any of the three formats (official ``captions_*.json``,
  Karpathy ``dataset_coco.json``, LAVIS ``coco_karpathy_*.json``), GQA balanced questions (official or LAVIS), and
  optionally VG's ``image_data.json`` to join GQA (Visual Genome) image ids to COCO ids.

Both give an ``EvalSplit``: the images to run (captioning uses the images that have captions, GQA the images that
have questions), the questions, and the annotations restricted to exactly those images and questions, in the shapes
the scorers take (a COCO captions dict; a GQA questions dict), so the scores cover exactly what was predicted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vict.eval.predictions import ScoreError

TASKS: tuple[str, ...] = ("caption", "gqa")
SETTINGS: tuple[str, ...] = ("none", "caption", "self")
"""GQA context settings of an evaluation: the question alone, a gold caption, the model's own caption."""
GOLD_CAPTION_RULE = 'first caption of the image (annotation order) not flagged "dense": true'


@dataclass
class EvalImage:
    """One image of the split: its id (as in the files), path and gold context caption.

    ``captioned``: the image has reference captions (it is part of the caption task); ``gold_caption`` is
    ``None`` when it has none (e.g. GQA testdev images, which are not in COCO).
    """

    image_id: Any
    path: Path
    gold_caption: str | None
    captioned: bool = True


@dataclass
class EvalQuestion:
    """One GQA question: ``image_index`` points into ``EvalSplit.images``."""

    question_id: str
    image_index: int
    question: str
    answer: str
    full_answer: str | None


@dataclass
class EvalSplit:
    """A split restricted to the evaluated images: ``captions`` (COCO file) and ``gqa`` (GQA questions file) hold
    only those images and questions, so the scorers see exactly what was predicted. ``data`` describes the source
    (a folder or the files) for the report; ``notes`` are printed in it."""

    name: str
    images: list[EvalImage]
    questions: list[EvalQuestion]
    captions: dict[str, Any] | None
    gqa: dict[str, dict[str, Any]] | None
    notes: list[str] = field(default_factory=list)
    data: str = ""


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScoreError(f"{what} {path}: not valid JSON ({e})") from e


def gold_captions(captions_file: dict[str, Any]) -> dict[str, str]:
    """``{str(image_id): caption}`` by ``GOLD_CAPTION_RULE`` (falls back to the first caption if all are dense)."""
    first: dict[str, str] = {}
    chosen: dict[str, str] = {}
    for ann in captions_file.get("annotations", []):
        key = str(ann["image_id"])
        first.setdefault(key, ann["caption"])
        if not ann.get("dense", False):
            chosen.setdefault(key, ann["caption"])
    return {k: chosen.get(k, v) for k, v in first.items()}


def _find_image(images_dir: Path, image_id: str, file_name: str | None) -> Path | None:
    candidates = [images_dir / file_name] if file_name else []
    candidates += [images_dir / f"{image_id}{ext}" for ext in (".jpg", ".png", ".jpeg")]
    return next((p for p in candidates if p.is_file()), None)


def load_eval_split(
    data_dir: str | Path, split: str = "test", tasks: Sequence[str] = TASKS, limit: int | None = None
) -> EvalSplit:
    """Read a split in the world layout, keep the first ``limit`` images (file order) and their questions.

    Raises:
        FileNotFoundError: a missing annotations file or image, naming it and how to create the data.
        ScoreError: malformed files.
    """
    from vict.data.world.layout import world_files

    data_dir = Path(data_dir)
    files = world_files(data_dir, split, check_split=False)
    cap_path, gqa_path = files["captions"], files["questions"]
    need = [cap_path] + ([gqa_path] if "gqa" in tasks else [])
    missing = [p for p in need if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"--data {data_dir}: missing {', '.join(str(p) for p in missing)}; expected the world layout "
            f"(create one with: vict data world --out {data_dir} --images 200), or pass real files with "
            "--captions/--questions/--images"
        )
    coco = _read_json(cap_path, "captions file")
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise ScoreError(f"{cap_path}: not a COCO captions file (needs 'images' and 'annotations')")
    gold = gold_captions(coco)
    images: list[EvalImage] = []
    for img in coco["images"][: limit or None]:
        key = str(img["id"])
        path = _find_image(files["images_dir"], key, img.get("file_name"))
        if path is None:
            raise FileNotFoundError(
                f"image {key} of {cap_path}: no file {files['images_dir'] / img.get('file_name', key)}"
            )
        images.append(EvalImage(image_id=img["id"], path=path, gold_caption=gold.get(key)))
    index = {str(im.image_id): i for i, im in enumerate(images)}
    kept = set(index)
    captions = None
    if "caption" in tasks:
        captions = {
            "images": [img for img in coco["images"] if str(img["id"]) in kept],
            "annotations": [a for a in coco["annotations"] if str(a["image_id"]) in kept],
        }
    gqa, questions = None, []
    if "gqa" in tasks:
        raw = _read_json(gqa_path, "questions file")
        if not isinstance(raw, dict):
            raise ScoreError(f"{gqa_path}: not a GQA questions file (a dict questionId -> question)")
        gqa = {}
        for qid, q in raw.items():
            if str(q.get("imageId")) not in kept or not q.get("isBalanced", True):
                continue
            if "answer" not in q or "question" not in q:
                raise ScoreError(f"{gqa_path}: question {qid} lacks 'question' or 'answer'")
            gqa[qid] = q
            questions.append(
                EvalQuestion(qid, index[str(q["imageId"])], q["question"], q["answer"], q.get("fullAnswer"))
            )
        all_ids = {str(img["id"]) for img in coco["images"]}
        unmatched = {str(q.get("imageId")) for q in raw.values()} - all_ids
        if unmatched:
            raise ScoreError(
                f"{gqa_path}: {len(unmatched)} imageIds have no image in {cap_path} (e.g. {sorted(unmatched)[:5]}); "
                "the harness needs captions and questions on the same images"
            )
    return EvalSplit(split, images, questions, captions, gqa, data=str(data_dir))


def _as_list(paths: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _result_id(image_id: str) -> int | str:
    """COCO results use the annotation file's int ids; other ids (``vg:...``, GQA's ``n123``) stay strings."""
    return int(image_id) if image_id.isdigit() else image_id


def load_eval_files(
    captions: str | Path | Sequence[str | Path] | None = None,
    questions: str | Path | Sequence[str | Path] | None = None,
    images_dir: str | Path | None = None,
    *,
    question_images_dir: str | Path | None = None,
    vg_image_data: str | Path | None = None,
    karpathy_split: str | None = None,
    tasks: Sequence[str] = TASKS,
    limit: int | None = None,
    name: str = "test",
) -> EvalSplit:
    """Real data (COCO captions, GQA questions) through ``vict.data.dataset.load_dataset``.

    Args:
        captions: COCO caption file(s) in any of the three formats (needed for the ``caption`` task).
        questions: GQA questions file(s) (needed for the ``gqa`` task); only balanced questions are scored.
        images_dir: folder the caption files' image names are relative to (and the GQA images, unless
            ``question_images_dir`` is given).
        vg_image_data: VG ``image_data.json``: joins GQA (VG) image ids to COCO ids, so that a GQA image that is
            also a COCO image gets its COCO captions (the ``caption`` setting's gold caption).
        karpathy_split: ``train``/``val``/``test`` of a Karpathy ``dataset_coco.json``.
        limit: keep the first ``limit`` images (caption-file order, then question-only images) and their questions.
        name: the split's name in the report and the prediction file names.

    Returns:
        An ``EvalSplit``. Images come from the caption task (images with captions) and the GQA task (images with
        answered balanced questions); an image with no caption has ``gold_caption=None`` and ``captioned=False``.

    Raises:
        ValueError: a task without its file, an image without a path (no images folder), a missing image file.
    """
    from vict.data.dataset import load_dataset

    cap_files, q_files = _as_list(captions), _as_list(questions)
    problems = []
    if "caption" in tasks and not cap_files:
        problems.append("the caption task needs --captions FILE (COCO captions: official, Karpathy or LAVIS format)")
    if "gqa" in tasks and not q_files:
        problems.append("the gqa task needs --questions FILE (GQA *_balanced_questions.json)")
    if images_dir is None and question_images_dir is None:
        problems.append("--images DIR is needed (the folder the annotation files' image names are relative to)")
    for what, path in [("--images", images_dir), ("--question-images", question_images_dir)]:
        if path is not None and not Path(path).is_dir():
            problems.append(f"{what} {path}: not a folder")
    if problems:
        raise ValueError("cannot read the evaluation data:\n  " + "\n  ".join(problems))
    loaded = load_dataset(
        cap_files or None,  # also for GQA alone: the captions give the `caption` setting its gold caption
        q_files if "gqa" in tasks else None,
        images_dir,
        vg_image_data,
        question_images_dir=question_images_dir,
        karpathy_split=karpathy_split,
        balanced_only=True,
    )
    # The world's files flag their exhaustive caption "dense"; the loaders drop flags, so read them back from
    # official-format files (COCO's own captions carry none: there the gold caption is simply the first).
    dense_aware: dict[str, str] = {}
    for path in cap_files:
        raw = _read_json(path, "captions file")
        if isinstance(raw, dict) and "annotations" in raw:
            for key, cap in gold_captions(raw).items():
                dense_aware.setdefault(key, cap.strip())
    records = [
        r
        for r in loaded.records
        if ("caption" in tasks and r.captions) or ("gqa" in tasks and any(qa.answer is not None for qa in r.qas))
    ][: limit or None]
    images: list[EvalImage] = []
    eval_questions: list[EvalQuestion] = []
    coco_images, coco_anns, gqa = [], [], {}
    missing = []
    for rec in records:
        if rec.image_path is None or not Path(rec.image_path).is_file():
            missing.append(f"image {rec.image_id}: {rec.image_path or 'no path (give --images)'}")
            continue
        index = len(images)
        gold = dense_aware.get(rec.image_id, rec.captions[0] if rec.captions else None)
        images.append(EvalImage(_result_id(rec.image_id), Path(rec.image_path), gold, captioned=bool(rec.captions)))
        if "caption" in tasks and rec.captions:
            coco_images.append({"id": _result_id(rec.image_id), "file_name": Path(rec.image_path).name})
            coco_anns += [{"image_id": _result_id(rec.image_id), "caption": c} for c in rec.captions]
        if "gqa" in tasks:
            for qa in rec.qas:
                if qa.answer is None:
                    continue
                types = {"structural": qa.structural, "semantic": qa.semantic, "detailed": qa.detailed}
                gqa[qa.question_id] = {
                    "imageId": rec.image_id,
                    "question": qa.question,
                    "answer": qa.answer,
                    "fullAnswer": qa.full_answer,
                    "isBalanced": qa.is_balanced,
                    "types": {k: v for k, v in types.items() if v is not None},
                }
                eval_questions.append(EvalQuestion(qa.question_id, index, qa.question, qa.answer, qa.full_answer))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images not found (e.g. {'; '.join(missing[:3])}); check --images / --question-images "
            "(the folders the annotation files' image names are relative to)"
        )
    if not images:
        raise ValueError("no image to evaluate: the files hold no captioned image / answered balanced question")
    notes = [f"Join of captions and questions: {loaded.join.summary()}."]
    data = "; ".join(
        f"{k}={', '.join(str(p) for p in v)}" for k, v in [("captions", cap_files), ("questions", q_files)] if v
    )
    return EvalSplit(
        name=name,
        images=images,
        questions=eval_questions,
        captions={"images": coco_images, "annotations": coco_anns} if "caption" in tasks else None,
        gqa=gqa if "gqa" in tasks else None,
        notes=notes,
        data=data,
    )
