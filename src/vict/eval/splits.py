"""What ``vict eval`` evaluates: the images, their gold captions and their GQA questions, from either source.

- ``load_eval_split(data_dir, split)``: a folder in the miniature world's layout (``vict data world``).
- ``load_eval_files(captions=..., questions=..., images_dir=...)``: real data through the data loaders
  (``vict.data.dataset.load_dataset``): COCO captions in any of the three formats (official ``captions_*.json``,
  Karpathy ``dataset_coco.json``, LAVIS ``coco_karpathy_*.json``), GQA balanced questions (official or LAVIS), and
  optionally VG's ``image_data.json`` to join GQA (Visual Genome) image ids to COCO ids.
- The extra tasks (``EXTRA_TASKS``, run only when asked for): ``load_vqav2`` / ``load_world_vqav2`` read VQAv2's
  official questions and annotations files (a ``VQAv2Split``); ``world_scienceqa_problems`` names a world's ScienceQA
  ``problems.json`` (run by ``vict.eval.scienceqa_run``).

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
| ``text``       | ``caption``  | the image's gold caption, and **no image**: a text-only question (only when asked for) |

``text`` is the control of ``caption``: the same caption, the question asked text only (the engine's text-only row,
``Image: N/A`` for the image). What a model answers there it reads from the caption alone; what it gains in
``caption`` over ``text`` it takes from the image. It is not among ``DEFAULT_SETTINGS``: ask for it by name.

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

from vict.data.policy import BadImageError, BadInputPolicy, SkippedImageError, SkipReport, UnknownImageError
from vict.eval.predictions import ScoreError

TASKS: tuple[str, ...] = ("caption", "gqa")
SETTINGS: tuple[str, ...] = ("none", "caption", "self", "qa", "dense", "distractor", "text")
"""GQA context settings of an evaluation (see the module's table)."""
TEXT_ONLY_SETTINGS: frozenset[str] = frozenset({"text"})
"""Settings whose questions are asked without their image."""
DEFAULT_SETTINGS: tuple[str, ...] = tuple(s for s in SETTINGS if s not in TEXT_ONLY_SETTINGS)
"""The settings an evaluation runs when none are named (``text`` runs only when asked for)."""
SETTING_KINDS: dict[str, str] = {
    "none": "none",
    "caption": "caption",
    "self": "self",
    "qa": "qa",
    "dense": "caption",
    "distractor": "caption",
    "text": "caption",
}
"""Setting -> the ``vict.inference.context.Context`` kind it answers with."""
SETTING_DESCRIPTIONS: dict[str, str] = {
    "none": "the question alone",
    "caption": "a gold caption of the image",
    "self": "the model's own caption",
    "qa": "another question-answer pair of the same image",
    "dense": "the image's dense caption naming every object (an oracle)",
    "distractor": "the gold caption of another image with other objects",
    "text": "a gold caption of the image as text, and no image (a text-only question)",
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
    skipped: SkipReport | None = None
    """Bad records and images left out under a skip policy (``vict eval --skip-bad``); ``None`` under fail."""


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
        text = image.gold_caption if setting in ("caption", "text") else image.dense_caption
        if text and text.strip():
            out[k] = ContextSource(kind, caption=text, image_index=q.image_index)
    return out


def missing_context_reason(setting: str) -> str:
    """Why a question can lack a context in ``setting`` (for the report's notes)."""
    if setting == "text":
        setting = "caption"
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


def _usable_images(
    candidates: list[tuple[str, Path | None]], policy: BadInputPolicy, verify: bool
) -> tuple[set[str], set[str]]:
    """``(usable keys, skipped keys)`` of ``(key, path)`` candidates: every file decoded when ``verify`` (fail: one
    error listing every bad image; skip: each counted)."""
    from vict.data.images import check_images

    errors = check_images([(f"image {key}", path) for key, path in candidates]) if verify else []
    policy.handle_all(errors, "images cannot be evaluated")
    bad = {e.record.removeprefix("image ") for e in errors if e.record}
    return {key for key, _ in candidates} - bad, bad


def _skip_note(policy: BadInputPolicy) -> list[str]:
    if policy.mode != "skip":
        return []
    r = policy.report
    counts = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items())) or "none"
    return [f"Bad inputs skipped (--skip-bad): {r.total} ({counts}); the first of each are in report.json."]


def load_eval_split(
    data_dir: str | Path,
    split: str = "test",
    tasks: Sequence[str] = TASKS,
    limit: int | None = None,
    *,
    policy: BadInputPolicy | str | None = None,
    verify_images: bool = True,
) -> EvalSplit:
    """Read a split in the world layout, keep the first ``limit`` images (file order) and their questions.

    Every record is checked as the data loaders check it (``vict.data.coco.check_coco_captions``,
    ``vict.data.gqa.check_gqa_question``: integer ids, non-empty string captions, questions and answers) and, with
    ``verify_images``, every image is decoded before any model runs. ``policy``: fail (default) raises on the first
    bad record (bad images: one error listing all); skip leaves bad records, bad images and the questions of
    skipped images out, counted in ``EvalSplit.skipped`` and a note.

    Raises:
        FileNotFoundError: a missing annotations file or image, naming it and how to create the data.
        DataError: a bad record or image (fail mode), a file of the wrong shape (both modes).
        ScoreError: malformed files; questions about images the captions file does not list (fail mode).
    """
    from vict.data.coco import check_coco_captions
    from vict.data.gqa import check_gqa_question
    from vict.data.policy import DataError, FileShapeError, resolve_policy
    from vict.data.world.layout import ANNOTATIONS_DIR, SCENES_FILE, world_files

    policy = resolve_policy(policy)
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
    raw_coco = _read_json(cap_path, "captions file")
    coco = check_coco_captions(raw_coco, cap_path, policy=policy)
    gold, dense = gold_captions(coco), dense_captions(coco)
    scenes_path = data_dir / ANNOTATIONS_DIR / SCENES_FILE
    objects = scene_objects(_read_json(scenes_path, "scenes file")) if scenes_path.is_file() else {}
    candidates: list[tuple[dict, Path | None]] = []
    for img in coco["images"][: limit or None]:
        key = str(img["id"])
        path = _find_image(files["images_dir"], key, img.get("file_name"))
        if path is None:
            error = BadImageError(
                f"image {key} of {cap_path}: no file {files['images_dir'] / img.get('file_name', key)}",
                reason="missing_image",
                file=str(cap_path),
                record=f"image {key}",
            )
            if policy.mode == "fail":
                raise FileNotFoundError(str(error))
            policy.handle(error)
        candidates.append((img, path))
    usable, bad = _usable_images(
        [(str(img["id"]), path) for img, path in candidates if path is not None], policy, verify_images
    )
    bad |= {str(img["id"]) for img, path in candidates if path is None}
    images: list[EvalImage] = []
    for img, path in candidates:
        key = str(img["id"])
        if key not in usable:
            continue
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
            raise FileShapeError(
                f"{gqa_path}: not a GQA questions file: the top level is not an object; expected an object keyed "
                "by question id, {qid: {'question', 'imageId', 'answer', ...}}",
                file=str(gqa_path),
            )
        listed = {str(img.get("id")) for img in raw_coco["images"] if isinstance(img, dict)}
        bad |= listed - {str(img["id"]) for img in coco["images"]}  # entries the check skipped
        gqa = {}
        unmatched: set[str] = set()
        for qid, q in raw.items():
            if isinstance(q, dict) and q.get("isBalanced") is False:
                continue
            try:
                image_id, qa = check_gqa_question(gqa_path, qid, q, require_answer=True)
                if image_id not in listed:
                    unmatched.add(image_id)
                    raise UnknownImageError(
                        f"{gqa_path}: question {qid!r}: imageId {image_id!r} is not an image of {cap_path}",
                        file=str(gqa_path),
                        record=f"question {qid!r}",
                        field="imageId",
                    )
                if image_id in bad:
                    raise SkippedImageError(
                        f"{gqa_path}: question {qid!r}: its image {image_id} was skipped, so it is not asked",
                        file=str(gqa_path),
                        record=f"question {qid!r}",
                        field="imageId",
                    )
            except UnknownImageError as e:
                if policy.mode == "skip":
                    policy.handle(e)
                continue
            except DataError as e:
                policy.handle(e)
                continue
            if image_id not in kept or not qa.is_balanced:
                continue
            gqa[qid] = q
            questions.append(EvalQuestion(qid, index[image_id], qa.question, qa.answer, qa.full_answer))
        if unmatched and policy.mode == "fail":
            raise ScoreError(
                f"{gqa_path}: {len(unmatched)} imageIds have no image in {cap_path} (e.g. {sorted(unmatched)[:5]}); "
                "the harness needs captions and questions on the same images"
            )
    skipped = policy.report if policy.mode == "skip" else None
    return EvalSplit(
        split, images, questions, captions, gqa, notes=_skip_note(policy), data=str(data_dir), skipped=skipped
    )


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
    policy: BadInputPolicy | str | None = None,
    verify_images: bool = True,
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
        policy: bad records (the loaders' checks) and bad images: fail (default; missing images are listed in one
            ``FileNotFoundError``, undecodable ones in one ``DataError``) or skip (left out, with the questions of
            skipped images, counted in ``EvalSplit.skipped`` and a note).
        verify_images: decode every evaluated image before any model runs.

    Returns:
        An ``EvalSplit``. Images come from the caption task (images with captions) and the GQA task (images with
        answered balanced questions); an image with no caption has ``gold_caption=None`` and ``captioned=False``.

    Raises:
        ValueError: a task without its file, an image without a path (no images folder), a missing image file.
        DataError: a bad record or image (fail mode), a file of the wrong shape (both modes).
    """
    from vict.data.coco import check_coco_captions
    from vict.data.dataset import load_dataset
    from vict.data.policy import resolve_policy

    policy = resolve_policy(policy)

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
        policy=policy,
    )
    # The world's files flag their exhaustive caption "dense"; the loaders drop flags, so read them back from
    # official-format files (COCO's own captions carry none: there the gold caption is simply the first).
    dense_aware: dict[str, str] = {}
    dense: dict[str, str] = {}
    for path in cap_files:
        raw = _read_json(path, "captions file")
        if isinstance(raw, dict) and "annotations" in raw:
            raw = check_coco_captions(raw, path, policy="skip")  # bad records: already raised or counted above
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
    missing = [
        f"image {rec.image_id}: {rec.image_path or 'no path (give --images)'}"
        for rec in records
        if rec.image_path is None or not Path(rec.image_path).is_file()
    ]
    if missing and policy.mode == "fail":
        raise FileNotFoundError(
            f"{len(missing)} images not found (e.g. {'; '.join(missing[:3])}); check --images / --question-images "
            "(the folders the annotation files' image names are relative to), or pass --skip-bad to skip them"
        )
    present = [(r.image_id, Path(r.image_path)) for r in records if r.image_path and Path(r.image_path).is_file()]
    for line in missing:
        policy.handle(
            BadImageError(f"{line}: image file not found; check --images / --question-images", "missing_image")
        )
    usable, _ = _usable_images(present, policy, verify_images)
    for rec in records:
        if rec.image_id not in usable:
            for qa in rec.qas if "gqa" in tasks else []:
                if qa.answer is not None:
                    policy.handle(
                        SkippedImageError(
                            f"question {qa.question_id!r}: its image {rec.image_id} was skipped, so it is not asked",
                            record=f"question {qa.question_id!r}",
                        )
                    )
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
    if not images:
        raise ValueError("no image to evaluate: the files hold no captioned image / answered balanced question")
    notes = [f"Join of captions and questions: {loaded.join.summary()}.", *_skip_note(policy)]
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
        skipped=policy.report if policy.mode == "skip" else None,
    )


# ---- VQAv2 and ScienceQA sources (``vict eval --vqav2-* / --scienceqa``, or a world folder's own files) ----

EXTRA_TASKS: tuple[str, ...] = ("scienceqa", "vqav2")
"""Tasks run only when asked for (``--tasks``, or their files given): default runs (``TASKS``) are unchanged."""
ALL_TASKS: tuple[str, ...] = TASKS + EXTRA_TASKS


@dataclass
class VQAv2Question:
    """One VQAv2 question with the file of its image."""

    question_id: int
    image_id: int
    question: str
    path: Path


@dataclass
class VQAv2Split:
    """VQAv2 questions to ask, and the official files restricted to exactly them (what ``score_vqav2`` takes):
    ``questions_file`` (``{"questions": [...]}``) and ``annotations`` (``{"annotations": [...]}``)."""

    name: str
    questions: list[VQAv2Question]
    questions_file: dict[str, Any]
    annotations: dict[str, Any]
    data: str = ""
    notes: list[str] = field(default_factory=list)


def coco_image_name(subtype: str, image_id: int) -> str:
    """COCO's file name of an image: ``COCO_val2014_000000000042.jpg``."""
    return f"COCO_{subtype}_{int(image_id):012d}.jpg"


def world_scienceqa_problems(world_dir: str | Path) -> Path:
    """``<world>/scienceqa/problems.json`` (``vict.data.world.layout.scienceqa_files``; it may not exist)."""
    from vict.data.world.layout import scienceqa_files

    return scienceqa_files(world_dir)["problems"]


def world_vqav2_files(world_dir: str | Path, split: str) -> tuple[Path, Path]:
    """``(questions, annotations)`` paths of a world's VQAv2 split (``vict.data.world.layout.vqav2_files``; they may
    not exist)."""
    from vict.data.world.layout import vqav2_files

    files = vqav2_files(world_dir, split, check_split=False)
    return files["questions"], files["annotations"]


def _vqav2_image_paths(
    image_ids: Sequence[int], images_dir: Path, subtype: str | None, names: dict[int, str] | None
) -> tuple[dict[int, Path], list[str]]:
    """``{image_id: path}`` and the images not found (one line each). ``names``: the world's own file names."""
    found, missing = {}, []
    for image_id in image_ids:
        if names is not None:
            candidates = [images_dir / names[image_id]] if image_id in names else []
        else:
            candidates = []
            if subtype:
                name = coco_image_name(subtype, image_id)
                candidates += [images_dir / name, images_dir / subtype / name]
            candidates += [images_dir / f"{image_id}{ext}" for ext in (".jpg", ".png", ".jpeg")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            tried = ", ".join(str(p) for p in candidates[:2]) or "no file_name in the captions file"
            missing.append(f"image {image_id} ({tried})")
        else:
            found[image_id] = path
    return found, missing


def load_vqav2(
    questions: str | Path,
    annotations: str | Path,
    images_dir: str | Path,
    *,
    image_names: dict[int, str] | None = None,
    limit: int | None = None,
    name: str | None = None,
) -> VQAv2Split:
    """Official VQAv2 files (``v2_OpenEnded_mscoco_*_questions.json``, ``v2_mscoco_*_annotations.json``) and images.

    Args:
        questions / annotations: the official files of one split (same question ids).
        images_dir: the images: COCO's ``COCO_{data_subtype}_{image_id:012d}.jpg`` (directly or under
            ``{data_subtype}/``; ``data_subtype`` from the questions file), or ``{image_id}.jpg/.png``.
        image_names: ``{image_id: file name under images_dir}`` instead (a world's own images, from its
            COCO-format captions file).
        limit: keep the questions of the first ``limit`` images (question-file order).
        name: the split's name (default the files' ``data_subtype``).

    Raises:
        FileNotFoundError: a missing file or image (all missing images counted, the first named).
        ScoreError: malformed files, or questions and annotations that do not match.
    """
    q_path, a_path, images_dir = Path(questions), Path(annotations), Path(images_dir)
    missing_files = [str(p) for p in (q_path, a_path) if not p.is_file()]
    if missing_files or not images_dir.is_dir():
        what = missing_files + ([f"{images_dir} (images folder)"] if not images_dir.is_dir() else [])
        raise FileNotFoundError(
            f"VQAv2: missing {', '.join(what)}; pass --vqav2-questions v2_OpenEnded_mscoco_<split>_questions.json "
            "--vqav2-annotations v2_mscoco_<split>_annotations.json --vqav2-images <COCO images folder>"
        )
    q_raw, a_raw = _read_json(q_path, "VQAv2 questions file"), _read_json(a_path, "VQAv2 annotations file")
    if not isinstance(q_raw, dict) or not isinstance(q_raw.get("questions"), list):
        raise ScoreError(f"{q_path}: not a VQAv2 questions file (a dict with a 'questions' list)")
    if not isinstance(a_raw, dict) or not isinstance(a_raw.get("annotations"), list):
        raise ScoreError(f"{a_path}: not a VQAv2 annotations file (a dict with an 'annotations' list)")
    bad = [k for k, q in enumerate(q_raw["questions"]) if not {"question_id", "image_id", "question"} <= set(q)]
    if bad:
        raise ScoreError(f"{q_path}: questions {bad[:5]} lack 'question_id', 'image_id' or 'question'")
    anns = {int(a["question_id"]): a for a in a_raw["annotations"]}
    q_ids = {int(q["question_id"]) for q in q_raw["questions"]}
    if q_ids != set(anns):
        raise ScoreError(
            f"VQAv2 questions {q_path} and annotations {a_path} do not match: {len(q_ids - set(anns))} questions "
            f"without annotation (e.g. {sorted(q_ids - set(anns))[:5]}), {len(set(anns) - q_ids)} annotations "
            f"without question (e.g. {sorted(set(anns) - q_ids)[:5]}); pass the two files of one split"
        )
    order = list(dict.fromkeys(int(q["image_id"]) for q in q_raw["questions"]))  # images in first-question order
    kept_images = order[: limit or None]
    subtype = q_raw.get("data_subtype") or a_raw.get("data_subtype")
    paths, missing = _vqav2_image_paths(kept_images, images_dir, subtype, image_names)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} VQAv2 images not found under {images_dir} (e.g. {'; '.join(missing[:3])}); check "
            "--vqav2-images (COCO's COCO_<subtype>_<id>.jpg files)"
        )
    kept = set(kept_images)
    raw_questions = [q for q in q_raw["questions"] if int(q["image_id"]) in kept]
    items = [
        VQAv2Question(int(q["question_id"]), int(q["image_id"]), q["question"], paths[int(q["image_id"])])
        for q in raw_questions
    ]
    notes = []
    if limit and len(order) > len(kept_images):
        notes.append(f"VQAv2: the questions of the first {len(kept_images)} of {len(order)} images (--limit).")
    return VQAv2Split(
        name=name or str(subtype or q_path.stem),
        questions=items,
        questions_file={**{k: v for k, v in q_raw.items() if k != "questions"}, "questions": raw_questions},
        annotations={
            **{k: v for k, v in a_raw.items() if k != "annotations"},
            "annotations": [anns[q.question_id] for q in items],
        },
        data=f"questions={q_path}; annotations={a_path}",
        notes=notes,
    )


def load_world_vqav2(world_dir: str | Path, split: str = "test", limit: int | None = None) -> VQAv2Split:
    """A world folder's VQAv2 split (``world_vqav2_files``), its images resolved
    through the world's COCO-format captions file (``images[].file_name`` under ``images/``)."""
    from vict.data.world.layout import world_files

    world_dir = Path(world_dir)
    q_path, a_path = world_vqav2_files(world_dir, split)
    files = world_files(world_dir, split, check_split=False)
    missing = [p for p in (q_path, a_path, files["captions"]) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"--data {world_dir}: the vqav2 task needs {', '.join(str(p) for p in missing)} (a world written with "
            "VQAv2 files), or pass --vqav2-questions/--vqav2-annotations/--vqav2-images"
        )
    coco = _read_json(files["captions"], "captions file")
    names = {int(img["id"]): img.get("file_name", f"{img['id']}.png") for img in coco.get("images", [])}
    out = load_vqav2(q_path, a_path, files["images_dir"], image_names=names, limit=limit, name=split)
    out.data = str(world_dir)
    return out
