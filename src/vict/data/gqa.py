"""GQA question loaders: official ``*_balanced_questions.json`` (streamed) and LAVIS's list format.

The official file is a JSON object keyed by question id; a train file is over 1 GB, so it is read one member
at a time (``vict.data.jsonio.iter_object_items``) and only the fields a ``QA`` keeps are retained.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vict.data.fields import Where, is_int, json_type, shown
from vict.data.jsonio import iter_array_items, iter_object_items, top_level_kind
from vict.data.policy import (
    BadInputPolicy,
    DataError,
    FileShapeError,
    MissingFieldError,
    WrongTypeError,
    resolve_policy,
)
from vict.data.records import QA, ImageRecord

QUESTION_FIELDS = "{'question': str, 'imageId': str, 'answer': str, 'fullAnswer': str, 'types': {...}, ...}"
LAVIS_FIELDS = "{'image': str, 'question': str, 'question_id': str, 'answer': str}"
TYPE_KEYS = ("structural", "semantic", "detailed")


def check_gqa_question(
    path: str | Path, qid: str, raw: Any, *, require_answer: bool = True, lavis: bool = False
) -> tuple[str, QA]:
    """``(image_id, QA)`` of one question record, every field type-checked; a ``DataError`` naming the file, the
    question, the field and the fix otherwise.

    Official records (``lavis=False``): ``question`` a non-empty string, ``imageId`` a non-empty string (an integer
    is accepted and written in decimal), ``answer`` a non-empty string (with ``require_answer=False``: absent, null
    or empty means withheld, ``None``), ``fullAnswer`` a string or null, ``types`` an object of strings or null,
    ``isBalanced`` a boolean. LAVIS records: ``image`` (``<imageId>.jpg``) instead of ``imageId``, ``question_id``
    naming the question.
    """
    where = Where(path, f"question {qid!r}" if not lavis else f"item [{qid}]")
    q = where.object(raw, LAVIS_FIELDS if lavis else QUESTION_FIELDS)
    if lavis:
        if isinstance(q.get("question_id"), str | int) and not isinstance(q.get("question_id"), bool):
            qid = str(q["question_id"])
            where = Where(path, f"{where.record} (question_id {qid!r})")
        image_id = Path(where.text(q, "image", "the image file, <imageId>.jpg")).stem
    elif is_int(q.get("imageId")):
        image_id = str(q["imageId"])
    else:
        image_id = where.text(q, "imageId", "the GQA image id, e.g. '2354786' or 'n161313'")
    question = where.text(q, "question", "the question text")
    if require_answer:
        try:
            answer = where.text(q, "answer", "the short answer")
        except MissingFieldError as e:
            hint = "; test/challenge files carry no answers: load them with require_answer=False"
            raise MissingFieldError(f"{e}{hint}", file=e.file, record=e.record, field=e.field) from None
    else:
        answer = where.text(q, "answer", "the short answer, or null when withheld", optional=True, empty_ok=True)
    full_answer = where.text(q, "fullAnswer", "the sentence answer, or null", optional=True, empty_ok=True)
    types = q.get("types")
    if types is None:
        types = {}
    elif not isinstance(types, dict):
        raise where.error(
            WrongTypeError, "types", f"is {shown(types)}", "an object {'structural', 'semantic', 'detailed'} or null"
        )
    flat = {f"types.{k}": types.get(k) for k in TYPE_KEYS}
    names = {k: where.text(flat, f"types.{k}", f"the {k} type", optional=True, empty_ok=True) for k in TYPE_KEYS}
    return image_id, QA(
        question_id=str(qid),
        question=question,
        answer=answer,
        full_answer=full_answer,
        structural=names["structural"],
        semantic=names["semantic"],
        is_balanced=where.flag(q, "isBalanced", True),
        detailed=names["detailed"],
    )


def iter_gqa_questions(
    path: str | Path,
    *,
    policy: BadInputPolicy | str | None = None,
    balanced_only: bool = False,
    require_answer: bool = True,
) -> Iterator[tuple[str, QA]]:
    """Yield ``(image_id, QA)`` per question, streaming; bad records go through ``policy``.

    Official files: ``{qid: {"imageId", "question", "answer", "fullAnswer", "types", "isBalanced", ...}}``.
    LAVIS files: ``[{"image": "<imageId>.jpg", "question", "question_id", "answer"}]`` (no ``fullAnswer``).
    Every record is checked by ``check_gqa_question``. In skip mode, a malformed JSON file is counted once and the
    questions read before the error are kept. A file that is not a questions file (neither an object nor an array,
    or an array with no object in it) raises ``FileShapeError`` under both modes.
    """
    path = Path(path)
    policy = resolve_policy(policy)
    kind = top_level_kind(path)
    if kind == "other":
        raise FileShapeError(
            f"{path}: not a GQA questions file: the top level is neither an object nor an array; expected an "
            f"object keyed by question id ({{qid: {QUESTION_FIELDS}}}) or a LAVIS array of {LAVIS_FIELDS}",
            file=str(path),
        )
    lavis = kind == "array"
    items = iter_object_items(path) if not lavis else enumerate(iter_array_items(path))
    n_items, kinds = 0, set()
    try:
        for qid, raw in items:
            n_items += 1
            kinds.add(json_type(raw))
            if balanced_only and isinstance(raw, dict) and raw.get("isBalanced") is False:
                continue  # filtered out, bad or not
            try:
                image_id, qa = check_gqa_question(path, str(qid), raw, require_answer=require_answer, lavis=lavis)
            except DataError as e:
                policy.handle(e)
                continue
            if balanced_only and not qa.is_balanced:
                continue
            yield image_id, qa
    except DataError as e:  # malformed JSON: nothing after it can be trusted
        policy.handle(e)
    if n_items and "object" not in kinds:
        raise FileShapeError(
            f"{path}: not a GQA questions file: its {n_items} {'items' if lavis else 'values'} are "
            f"{', '.join(sorted(kinds))}, not objects; expected "
            + (f"an array of {LAVIS_FIELDS}" if lavis else f"an object {{qid: {QUESTION_FIELDS}}}"),
            file=str(path),
        )


def load_gqa_questions(
    path: str | Path,
    images_dir: str | Path | None = None,
    *,
    policy: BadInputPolicy | str | None = None,
    balanced_only: bool = False,
    require_answer: bool = True,
    image_ext: str | None = None,
) -> list[ImageRecord]:
    """Group a GQA questions file by image into records (QAs only, in file order).

    Args:
        images_dir: GQA ``images/`` folder; image path = ``images_dir / f"{imageId}{image_ext}"``.
        image_ext: ``".jpg"`` (GQA) or ``".png"`` (the world); ``None`` picks ``.png`` if the first image
            exists only as PNG, else ``.jpg``.
        balanced_only: keep only ``isBalanced`` questions (what the official accuracy counts).
        require_answer: a question without a non-empty string ``answer`` is bad input (training and scoring need
            one; set False for answer-less test files).
        policy: what to do with a bad record (``check_gqa_question``): fail fast (default) or skip and count.
    """
    images = Path(images_dir) if images_dir is not None else None
    records: dict[str, ImageRecord] = {}
    for image_id, qa in iter_gqa_questions(
        path, policy=policy, balanced_only=balanced_only, require_answer=require_answer
    ):
        rec = records.get(image_id)
        if rec is None:
            if images is not None and image_ext is None:
                png_only = (images / f"{image_id}.png").exists() and not (images / f"{image_id}.jpg").exists()
                image_ext = ".png" if png_only else ".jpg"
            path_ = images / f"{image_id}{image_ext}" if images is not None else None
            rec = records[image_id] = ImageRecord(image_id=image_id, image_path=path_)
        rec.qas.append(qa)
    return list(records.values())
