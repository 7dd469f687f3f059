"""GQA accuracy: the official ``eval.py`` rule (exact string equality) and the LAVIS/VQA-normalised rule.

Official rule: every question with ``isBalanced`` must have a prediction (else an error, as ``eval.py`` raises
``missing predictions``), and a prediction is right iff it equals ``answer`` as a Python string, with no
normalisation at all. The ``vqa`` rule first applies the VQA ``process_punctuation`` + ``process_digit_article`` to
both sides (what LAVIS's ``GQATask`` does), which is the fair rule for free-form generated text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from vict.eval.predictions import ScoreError, index_predictions
from vict.eval.vqa import normalize_answer

Rule = Literal["official", "vqa"]
RULES: tuple[str, ...] = ("official", "vqa")

SEMANTIC_NAMES: dict[str, str] = {
    "attr": "attribute",
    "cat": "category",
    "global": "scene",
    "obj": "object",
    "rel": "relation",
}
"""Display names the official script prints for the semantic types."""
TYPE_FIELDS: tuple[str, ...] = ("structural", "semantic", "detailed")
"""The fields of a question's ``types`` that ``gqa_accuracy_by_type`` breaks accuracy down by."""


def gqa_correct(prediction: str, answer: str, rule: Rule = "official") -> bool:
    """Whether one prediction is right under ``rule`` (``official``: exact equality; ``vqa``: after normalisation)."""
    if rule == "official":
        return prediction == answer
    if rule == "vqa":
        return normalize_answer(prediction) == normalize_answer(answer)
    raise ScoreError(f"unknown GQA rule {rule!r}; choose one of {RULES}")


def gqa_correctness(
    predictions: Sequence[Mapping[str, Any]],
    questions: Mapping[str, Mapping[str, Any]],
    rule: Rule = "official",
    balanced_only: bool = True,
) -> dict[str, bool]:
    """``{questionId: correct}`` for every scored question (the per-question verdicts ``score_gqa`` aggregates).

    Arguments and errors as ``score_gqa``.
    """
    if rule not in RULES:
        raise ScoreError(f"unknown GQA rule {rule!r}; choose one of {RULES}")
    if not isinstance(questions, Mapping):
        raise ScoreError("GQA questions: expected the official dict {questionId: question}; got a list")
    preds = index_predictions(predictions, id_key="questionId", value_key="prediction", what="GQA predictions")
    unknown = sorted(set(preds) - set(questions))
    if unknown:
        raise ScoreError(
            f"GQA predictions: {len(unknown)} questionIds are not in the questions file (e.g. {unknown[:5]}); "
            "predictions and questions must come from the same split"
        )
    scored = {qid: q for qid, q in questions.items() if not balanced_only or q.get("isBalanced", True)}
    missing = sorted(qid for qid in scored if qid not in preds)
    if missing:
        raise ScoreError(
            f"GQA predictions: missing predictions for {len(missing)} of {len(scored)} scored questions "
            f"(e.g. {missing[:5]}); the official eval.py raises 'missing predictions' too"
        )
    correct: dict[str, bool] = {}
    for qid, q in scored.items():
        if "answer" not in q:
            raise ScoreError(f"GQA question {qid}: no 'answer' (test/challenge files have none and cannot be scored)")
        correct[qid] = gqa_correct(preds[qid], q["answer"], rule)
    return correct


def _pct(values: Sequence[bool]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def score_gqa(
    predictions: Sequence[Mapping[str, Any]],
    questions: Mapping[str, Mapping[str, Any]],
    rule: Rule = "official",
    balanced_only: bool = True,
) -> dict[str, Any]:
    """Score GQA predictions.

    Args:
        predictions: ``[{"questionId": str, "prediction": str}]`` (the official predictions format; other keys
            of a record are ignored).
        questions: a GQA questions file: ``{questionId: {"answer", "isBalanced", "types": {"structural",
            "semantic"}, ...}}``. A question without ``isBalanced`` counts as balanced.
        rule: ``official`` (exact equality) or ``vqa`` (VQA normalisation of both sides first).
        balanced_only: score only ``isBalanced`` questions, as the official script does.

    Returns:
        ``{"accuracy", "by_structural", "by_semantic", "binary", "open", "n", "correct", "rule"}``; accuracies in
        percent (unrounded floats); ``open`` = structural type ``query``, ``binary`` = the rest, as in ``eval.py``.

    Raises:
        ScoreError: a scored question has no prediction, a prediction id is not in the questions file, a
            duplicate prediction id, or a question without ``answer``.
    """
    verdicts = gqa_correctness(predictions, questions, rule, balanced_only)
    by_structural: dict[str, list[bool]] = defaultdict(list)
    by_semantic: dict[str, list[bool]] = defaultdict(list)
    binary_open: dict[str, list[bool]] = defaultdict(list)
    for qid, ok in verdicts.items():
        types = questions[qid].get("types") or {}
        structural = str(types.get("structural", "unknown"))
        by_structural[structural].append(ok)
        by_semantic[str(types.get("semantic", "unknown"))].append(ok)
        binary_open["open" if structural == "query" else "binary"].append(ok)
    correct = list(verdicts.values())
    return {
        "accuracy": _pct(correct),
        "by_structural": {k: _pct(v) for k, v in sorted(by_structural.items())},
        "by_semantic": {k: _pct(v) for k, v in sorted(by_semantic.items())},
        "binary": _pct(binary_open["binary"]) if binary_open["binary"] else None,
        "open": _pct(binary_open["open"]) if binary_open["open"] else None,
        "n": len(correct),
        "correct": int(sum(correct)),
        "rule": rule,
    }


def gqa_accuracy_by_type(
    correct: Mapping[str, bool], questions: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, float | int]]:
    """Accuracy by question type from per-question verdicts (``gqa_correctness``): ``{type: {"accuracy": percent,
    "count": n}}``.

    Keys: ``structural/<types.structural>``, ``semantic/<types.semantic>`` (eval.py's ``accuracyPerStructuralType``
    and ``accuracyPerSemanticType``; raw values, ``SEMANTIC_NAMES`` gives the printed names), ``detailed/<types.detailed>``
    (the miniature world writes its question families there), and eval.py's ``binary``/``open`` (``open`` iff
    ``types.structural == "query"``; only questions with a structural type). A question without ``types`` counts
    under none of them, a question missing one field under the others; so when every question has a structural type
    the count-weighted mean over ``structural/*`` is the overall accuracy. Keys are sorted.
    """
    groups: dict[str, list[bool]] = defaultdict(list)
    for qid, ok in correct.items():
        types = questions[qid].get("types") or {}
        for field in TYPE_FIELDS:
            if types.get(field) is not None:
                groups[f"{field}/{types[field]}"].append(ok)
        if types.get("structural") is not None:
            groups["open" if types["structural"] == "query" else "binary"].append(ok)
    return {k: {"accuracy": _pct(v), "count": len(v)} for k, v in sorted(groups.items())}
