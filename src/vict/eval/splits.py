"""What ``vict eval`` evaluates: the images, their gold captions and their GQA questions, from either source.

- ``load_eval_split(data_dir, split)``: a folder in the miniature world's layout (``vict data world``).
- ``load_eval_files(captions=..., questions=..., images_dir=...)``: real data through the data loaders
  (``vict.data.dataset.load_dataset``): COCO captions in any of the three formats (official ``captions_*.json``,
  Karpathy ``dataset_coco.json``, LAVIS ``coco_karpathy_*.json``), GQA balanced questions (official or LAVIS), and
  optionally VG's ``image_data.json`` to join GQA (Visual Genome) image ids to COCO ids.

Both give an ``EvalSplit``: the images to run (captioning uses the images that have captions, GQA the images that
have questions), the questions, and the annotations restricted to exactly those images and questions, in the shapes
the scorers take (a COCO captions dict; a GQA questions dict), so the scores cover exactly what was predicted.

GQA context settings (``SETTINGS``) and where their context comes from (``context_sources``). Three of them are
``caption``-kind contexts (``vict.inference.context``) that differ only in the caption's source:

| setting        | kind         | the context given with the question                                             |
|----------------|--------------|---------------------------------------------------------------------------------|
| ``none``       | ``none``     | nothing                                                                         |
| ``caption``    | ``caption``  | the image's gold caption (``GOLD_CAPTION_RULE``)                                |
| ``self``       | ``self``     | the model's own caption                                                         |
| ``qa``         | ``qa``       | another question-answer pair of the same image (``QA_CONTEXT_RULE``)            |
| ``dense``      | ``caption``  | the image's caption flagged ``"dense": true`` (an oracle: it names every object) |
| ``distractor`` | ``caption``  | the gold caption of another evaluated image with other objects (``DISTRACTOR_RULE``) |

A question with no context of its setting's kind (an image without a gold caption; a single question on its image
for ``qa``; no dense caption, as in real COCO) is skipped in that setting; the report counts it as ``skipped``.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vict.eval.predictions import ScoreError

TASKS: tuple[str, ...] = ("caption", "gqa")
SETTINGS: tuple[str, ...] = ("none", "caption", "self", "qa", "dense", "distractor")
"""GQA context settings of an evaluation (see the module's table)."""
SETTING_KINDS: dict[str, str] = {
    "none": "none",
    "caption": "caption",
    "self": "self",
    "qa": "qa",
    "dense": "caption",
    "distractor": "caption",
}
"""Setting -> the ``vict.inference.context.Context`` kind it answers with."""
SETTING_DESCRIPTIONS: dict[str, str] = {
    "none": "the question alone",
    "caption": "a gold caption of the image",
    "self": "the model's own caption",
    "qa": "another question-answer pair of the same image",
    "dense": "the image's dense caption naming every object (an oracle)",
    "distractor": "the gold caption of another image with other objects",
}
GOLD_CAPTION_RULE = 'first caption of the image (annotation order) not flagged "dense": true'
DENSE_CAPTION_RULE = 'first caption of the image (annotation order) flagged "dense": true'
QA_CONTEXT_RULE = (
    "the next question of the same image in file order (cyclically) whose text differs from the question asked "
    "(case and spacing ignored), with its gold answer"
)
DISTRACTOR_RULE = (
    "the gold caption (same rule) of the next evaluated image in split order (cyclically) whose gold caption text "
    "differs and, where annotations/scenes.json gives both scenes, whose object set (shape, colour, size, position) "
    "differs"
)


@dataclass
class EvalImage:
    """One image of the split: its id (as in the files), path and context captions.

    ``captioned``: the image has reference captions (it is part of the caption task); ``gold_caption`` is
    ``None`` when it has none (e.g. GQA testdev images, which are not in COCO). ``dense_caption``: its caption
    flagged ``"dense": true`` (``DENSE_CAPTION_RULE``; the miniature world's, ``None`` for real COCO).
    ``objects``: its scene's ``(shape, colour, size, position)`` set from ``annotations/scenes.json`` (``None``
    where there is none).
    """

    image_id: Any
    path: Path
    gold_caption: str | None
    captioned: bool = True
    dense_caption: str | None = None
    objects: frozenset[tuple[str, ...]] | None = None


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


def dense_captions(captions_file: dict[str, Any]) -> dict[str, str]:
    """``{str(image_id): caption}`` by ``DENSE_CAPTION_RULE`` (images without a dense-flagged caption are absent)."""
    out: dict[str, str] = {}
    for ann in captions_file.get("annotations", []):
        if ann.get("dense", False):
            out.setdefault(str(ann["image_id"]), ann["caption"])
    return out


def scene_objects(scenes_file: dict[str, Any]) -> dict[str, frozenset[tuple[str, ...]]]:
    """``{str(image_id): {(shape, colour, size, position)}}`` from the world's ``annotations/scenes.json``."""
    out = {}
    for scene in scenes_file.get("scenes", []):
        objects = scene.get("objects", [])
        out[str(scene["image_id"])] = frozenset(
            (o["shape"], o["color"], o["size"], str(o.get("position", (o.get("row"), o.get("col"))))) for o in objects
        )
    return out


@dataclass(frozen=True)
class ContextSource:
    """The context one question is answered with in one setting, and where it comes from.

    ``kind``: the ``Context`` kind (``SETTING_KINDS``); ``caption``: the given caption (``caption`` kind);
    ``qa``: the given ``(question, answer)`` pair (``qa`` kind); ``image_index``: the image (into
    ``EvalSplit.images``) the caption belongs to (the question's own for ``caption``/``dense``, another for
    ``distractor``); ``question_index``: the question (into ``EvalSplit.questions``) the pair belongs to.
    """

    kind: str
    caption: str | None = None
    qa: tuple[str, str] | None = None
    image_index: int | None = None
    question_index: int | None = None


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()).rstrip("?. ") == " ".join(b.lower().split()).rstrip("?. ")


def qa_partners(questions: Sequence[EvalQuestion]) -> dict[int, int]:
    """``{question index: index of the question given as its context}`` by ``QA_CONTEXT_RULE``.

    Never the question itself nor one with the same text; a question whose image has no other question (of another
    text) is absent.
    """
    by_image: dict[int, list[int]] = {}
    for k, q in enumerate(questions):
        by_image.setdefault(q.image_index, []).append(k)
    out = {}
    for ks in by_image.values():
        for p, k in enumerate(ks):
            for other in ks[p + 1 :] + ks[:p]:
                if (
                    not _same_text(questions[other].question, questions[k].question)
                    and questions[other].answer.strip()
                ):
                    out[k] = other
                    break
    return out


def distractor_images(images: Sequence[EvalImage]) -> dict[int, int]:
    """``{image index: index of the image whose gold caption is its distractor}`` by ``DISTRACTOR_RULE``.

    Candidates are the evaluated images (``images``) after the image, cyclically: the first with a gold caption of
    another text and, when both scenes are known, another object set. An image with no such candidate is absent.
    """
    captioned = [j for j, im in enumerate(images) if (im.gold_caption or "").strip()]
    out = {}
    for i, image in enumerate(images):
        start = bisect.bisect_right(captioned, i)  # scan only captioned images, from the next one: usually one step
        for t in range(len(captioned)):
            j = captioned[(start + t) % len(captioned)]
            other = images[j]
            if j == i or (image.gold_caption is not None and _same_text(other.gold_caption, image.gold_caption)):
                continue
            if image.objects is not None and other.objects is not None and image.objects == other.objects:
                continue
            out[i] = j
            break
    return out


def context_sources(data: EvalSplit, setting: str) -> dict[int, ContextSource]:
    """``{question index: ContextSource}`` of the questions of ``data`` that have a context in ``setting``.

    Deterministic (file and split order only). A question that is absent is skipped in the setting (see
    ``missing_context_reason``).
    """
    if setting not in SETTINGS:
        raise ValueError(f"GQA setting {setting!r}: use one of {list(SETTINGS)}")
    images, questions = data.images, data.questions
    kind = SETTING_KINDS[setting]
    if setting in ("none", "self"):
        return {k: ContextSource(kind) for k in range(len(questions))}
    if setting == "qa":
        return {
            k: ContextSource(kind, qa=(questions[o].question, questions[o].answer), question_index=o)
            for k, o in qa_partners(questions).items()
        }
    out = {}
    if setting == "distractor":
        chosen = distractor_images(images)
        for k, q in enumerate(questions):
            if q.image_index in chosen:
                j = chosen[q.image_index]
                out[k] = ContextSource(kind, caption=images[j].gold_caption, image_index=j)
        return out
    for k, q in enumerate(questions):
        image = images[q.image_index]
        text = image.gold_caption if setting == "caption" else image.dense_caption
        if text and text.strip():
            out[k] = ContextSource(kind, caption=text, image_index=q.image_index)
    return out


def missing_context_reason(setting: str) -> str:
    """Why a question can lack a context in ``setting`` (for the report's notes)."""
    return {
        "caption": "its image has no gold caption (e.g. GQA testdev images are not COCO images; give COCO captions "
        "and --vg-image-data to join them)",
        "qa": "its image has no other question of another text",
        "dense": 'its image has no caption flagged "dense": true (the miniature world\'s captions have one; real '
        "COCO captions have none)",
        "distractor": "no other evaluated image has a gold caption of another text and other objects (it needs at "
        "least two such captioned images; see --limit)",
    }.get(setting, "no GQA question on the evaluated images")


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
    from vict.data.world.layout import ANNOTATIONS_DIR, SCENES_FILE, world_files

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
    gold, dense = gold_captions(coco), dense_captions(coco)
    scenes_path = data_dir / ANNOTATIONS_DIR / SCENES_FILE
    objects = scene_objects(_read_json(scenes_path, "scenes file")) if scenes_path.is_file() else {}
    images: list[EvalImage] = []
    for img in coco["images"][: limit or None]:
        key = str(img["id"])
        path = _find_image(files["images_dir"], key, img.get("file_name"))
        if path is None:
            raise FileNotFoundError(
                f"image {key} of {cap_path}: no file {files['images_dir'] / img.get('file_name', key)}"
            )
        images.append(
            EvalImage(
                image_id=img["id"],
                path=path,
                gold_caption=gold.get(key),
                dense_caption=dense.get(key),
                objects=objects.get(key),
            )
        )
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
    dense: dict[str, str] = {}
    for path in cap_files:
        raw = _read_json(path, "captions file")
        if isinstance(raw, dict) and "annotations" in raw:
            for key, cap in gold_captions(raw).items():
                dense_aware.setdefault(key, cap.strip())
            for key, cap in dense_captions(raw).items():
                dense.setdefault(key, cap.strip())
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
        images.append(
            EvalImage(
                _result_id(rec.image_id),
                Path(rec.image_path),
                gold,
                captioned=bool(rec.captions),
                dense_caption=dense.get(rec.image_id),
            )
        )
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
