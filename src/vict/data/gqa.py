"""GQA question loaders: official ``*_balanced_questions.json`` (streamed) and LAVIS's list format.

The official file is a JSON object keyed by question id; a train file is over 1 GB, so it is read one member
at a time (``vict.data.jsonio.iter_object_items``) and only the fields a ``QA`` keeps are retained.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vict.data.jsonio import iter_array_items, iter_object_items, top_level_kind
from vict.data.policy import BadInputPolicy, DataError, MissingFieldError, resolve_policy
from vict.data.records import QA, ImageRecord


def _qa(path: Path, qid: str, q: dict, require_answer: bool) -> tuple[str, QA]:
    if not isinstance(q, dict):
        raise MissingFieldError(f"{path}: question {qid!r} is a {type(q).__name__}, expected an object")
    missing = [k for k in ("question", "imageId") if k not in q]
    if require_answer and "answer" not in q:
        missing.append("answer")
    if missing:
        hint = (
            "; test/challenge files carry no answers: load them with require_answer=False"
            if missing == ["answer"]
            else "; fix or drop the record"
        )
        raise MissingFieldError(f"{path}: question {qid!r} has no {missing}{hint}")
    types = q.get("types") or {}
    return str(q["imageId"]), QA(
        question_id=str(qid),
        question=str(q["question"]),
        answer=q.get("answer"),
        full_answer=q.get("fullAnswer"),
        structural=types.get("structural"),
        semantic=types.get("semantic"),
        is_balanced=bool(q.get("isBalanced", True)),
        detailed=types.get("detailed"),
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
    In skip mode, a malformed JSON file is counted once and the questions read before the error are kept.
    """
    path = Path(path)
    policy = resolve_policy(policy)
    kind = top_level_kind(path)
    if kind == "other":
        raise DataError(f"{path}: not a GQA questions file (expected a JSON object keyed by question id, or a list)")
    try:
        if kind == "object":
            items = iter_object_items(path)
        else:
            items = (
                (
                    str(q.get("question_id", i)) if isinstance(q, dict) else str(i),
                    {**q, "imageId": Path(q["image"]).stem} if isinstance(q, dict) and "image" in q else q,
                )
                for i, q in enumerate(iter_array_items(path))
            )
        for qid, raw in items:
            try:
                image_id, qa = _qa(path, qid, raw, require_answer)
            except DataError as e:
                policy.handle(e)
                continue
            if balanced_only and not qa.is_balanced:
                continue
            yield image_id, qa
    except DataError as e:  # malformed JSON: nothing after it can be trusted
        policy.handle(e)


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
        require_answer: a question without ``answer`` is bad input (set False for answer-less test files).
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
