"""GQA accuracy: official exact-equality rule, the vqa rule, breakdowns and bad input."""

from __future__ import annotations

import pytest

from vict.eval.gqa import gqa_correct, score_gqa
from vict.eval.predictions import ScoreError


def _q(answer: str, structural: str, semantic: str, balanced: bool = True) -> dict:
    return {
        "question": "?",
        "imageId": "1",
        "answer": answer,
        "fullAnswer": f"It is {answer}.",
        "isBalanced": balanced,
        "types": {"structural": structural, "semantic": semantic, "detailed": "x"},
    }


QUESTIONS = {
    "1": _q("yes", "verify", "rel"),
    "2": _q("red", "query", "attr"),
    "3": _q("2", "query", "attr"),
    "4": _q("left", "choose", "rel"),
    "5": _q("no", "verify", "obj", balanced=False),
}


def test_official_rule_is_exact_equality() -> None:
    assert gqa_correct("yes", "yes") and not gqa_correct("Yes", "yes") and not gqa_correct("yes.", "yes")
    assert not gqa_correct("two", "2") and not gqa_correct(" red", "red")


def test_vqa_rule_normalises_both_sides() -> None:
    assert gqa_correct("Yes.", "yes", rule="vqa") and gqa_correct("two", "2", rule="vqa")
    assert gqa_correct("the red", "red", rule="vqa") and not gqa_correct("blue", "red", rule="vqa")


def test_score_breakdowns_official_and_vqa() -> None:
    preds = [
        {"questionId": "1", "prediction": "yes"},
        {"questionId": "2", "prediction": "Red."},
        {"questionId": "3", "prediction": "two"},
        {"questionId": "4", "prediction": "right"},
    ]
    official = score_gqa(preds, QUESTIONS)
    assert official["n"] == 4 and official["correct"] == 1
    assert official["accuracy"] == 25.0
    assert official["by_structural"] == {"choose": 0.0, "query": 0.0, "verify": 100.0}
    assert official["by_semantic"] == {"attr": 0.0, "rel": 50.0}
    assert official["open"] == 0.0 and official["binary"] == 50.0
    vqa = score_gqa(preds, QUESTIONS, rule="vqa")
    assert vqa["accuracy"] == 75.0 and vqa["by_semantic"]["attr"] == 100.0 and vqa["open"] == 100.0


def test_unbalanced_questions_need_no_prediction_unless_requested() -> None:
    preds = [{"questionId": q, "prediction": QUESTIONS[q]["answer"]} for q in ("1", "2", "3", "4")]
    assert score_gqa(preds, QUESTIONS)["accuracy"] == 100.0
    with pytest.raises(ScoreError, match=r"missing predictions for 1 of 5.*'5'"):
        score_gqa(preds, QUESTIONS, balanced_only=False)


def test_missing_duplicate_and_unknown_ids() -> None:
    with pytest.raises(ScoreError, match=r"missing predictions for 3 of 4"):
        score_gqa([{"questionId": "1", "prediction": "yes"}], QUESTIONS)
    full = [{"questionId": q, "prediction": "x"} for q in ("1", "2", "3", "4")]
    with pytest.raises(ScoreError, match="duplicate questionId"):
        score_gqa([*full, {"questionId": "1", "prediction": "no"}], QUESTIONS)
    with pytest.raises(ScoreError, match="not in the questions file"):
        score_gqa([*full, {"questionId": "99", "prediction": "no"}], QUESTIONS)
    with pytest.raises(ScoreError, match="unknown GQA rule"):
        score_gqa(full, QUESTIONS, rule="fuzzy")  # type: ignore[arg-type]
