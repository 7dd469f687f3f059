"""VQA normalisation and accuracy against the reference table (formats.md §3b) and hand-computed cases."""

from __future__ import annotations

import pytest

from vict.eval.predictions import ScoreError
from vict.eval.vqa import (
    ARTICLES,
    CONTRACTIONS,
    MANUAL_MAP,
    PUNCT,
    process_digit_article,
    process_punctuation,
    score_vqav2,
    vqa_accuracy,
)

# input, after processPunctuation, after processDigitArticle (formats.md §3b, row by row)
TABLE = [
    ("Two dogs.", "Two dogs", "2 dogs"),
    ("dont know", "dont know", "don't know"),
    ("100,978", "100978", "100978"),
    ("2.50", "2.50", "2.50"),
    ("yes!", "yes ", "yes"),
    ("black-and-white", "black and white", "black and white"),
    ("black - white", "black  white", "black white"),
    ("It's 2:50 pm.", "It's 2:50 pm", "it's 2:50 pm"),
    ("1,000 and a-b", "1000 and ab", "1000 and ab"),
    ("None", "None", "0"),
    ("An Apple", "An Apple", "apple"),
    ("Im here", "Im here", "im here"),
]


@pytest.mark.parametrize(("text", "after_punct", "after_digit"), TABLE)
def test_normalisation_table(text: str, after_punct: str, after_digit: str) -> None:
    assert process_punctuation(text) == after_punct
    assert process_digit_article(after_punct) == after_digit


def test_tables_have_official_sizes() -> None:
    assert len(PUNCT) == 21 and PUNCT[0] == ";" and PUNCT[-1] == "!"
    assert len(CONTRACTIONS) == 120 and CONTRACTIONS["somebody'd"] == "somebodyd"
    assert len(MANUAL_MAP) == 12 and ARTICLES == ["a", "an", "the"]


def test_period_strip_count_quirk() -> None:
    # re.UNICODE (32) is passed as `count`: only the first 32 periods not followed by a digit are removed.
    assert process_punctuation("a." * 40) == "a" * 32 + "a." * 8
    assert process_punctuation("a.b.c") == "abc"
    assert process_punctuation("3.") == "3"


def test_normalisation_does_not_mutate_tables() -> None:
    before = dict(MANUAL_MAP)
    process_digit_article("zebra giraffe one")
    assert before == MANUAL_MAP


@pytest.mark.parametrize(("k", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_accuracy_ladder(k: int, expected: float) -> None:
    humans = ["cat"] * k + ["dog", "bird", "fish", "cow", "pig", "hen", "elk", "emu", "owl", "ant"][: 10 - k]
    assert vqa_accuracy("cat", humans) == pytest.approx(expected)


def test_normalised_only_when_humans_disagree() -> None:
    # All ten humans say "2": no normalisation at all, so "two" scores 0 and "2." also scores 0.
    assert vqa_accuracy("two", ["2"] * 10) == 0.0
    assert vqa_accuracy("2.", ["2"] * 10) == 0.0
    assert vqa_accuracy("2", ["2"] * 10) == 1.0
    # One human disagrees: both sides are normalised, "two" -> "2" matches the nine others.
    assert vqa_accuracy("two", ["2"] * 9 + ["3"]) == pytest.approx(1.0)
    assert vqa_accuracy("Two.", ["two"] * 2 + ["3"] * 8) == pytest.approx(0.6)


def test_whitespace_cleaned_always() -> None:
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0


def _ann(qid: int, answers: list[str], atype: str = "other", qtype: str = "what") -> dict:
    return {
        "question_id": qid,
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
        "answer_type": atype,
        "question_type": qtype,
        "multiple_choice_answer": answers[0],
    }


def test_score_vqav2_per_type_and_rounding() -> None:
    anns = {
        "annotations": [
            _ann(1, ["yes"] * 10, "yes/no", "is the"),
            _ann(2, ["2"] * 3 + ["3"] * 7, "number", "how many"),
            _ann(3, ["red"] + ["blue"] * 9, "other", "what color"),
        ]
    }
    questions = {"questions": [{"question_id": q, "image_id": 1, "question": "?"} for q in (1, 2, 3)]}
    preds = [
        {"question_id": 1, "answer": "yes"},
        {"question_id": 2, "answer": "two"},
        {"question_id": 3, "answer": "red"},
    ]
    out = score_vqav2(preds, anns, questions)
    assert out["n"] == 3
    assert out["per_answer_type"] == {"number": 90.0, "other": 30.0, "yes/no": 100.0}
    assert out["overall"] == round(100 * (1.0 + 0.9 + 0.3) / 3, 2) == 73.33
    assert out["per_question_type"]["how many"] == 90.0


def test_score_vqav2_bad_input() -> None:
    anns = {"annotations": [_ann(1, ["yes"] * 10), _ann(2, ["no"] * 10)]}
    with pytest.raises(ScoreError, match="missing predictions for 1 of 2"):
        score_vqav2([{"question_id": 1, "answer": "yes"}], anns)
    with pytest.raises(ScoreError, match="duplicate question_id"):
        score_vqav2([{"question_id": 1, "answer": "yes"}] * 2 + [{"question_id": 2, "answer": "no"}], anns)
    with pytest.raises(ScoreError, match="not in the annotations"):
        score_vqav2([{"question_id": q, "answer": "x"} for q in (1, 2, 9)], anns)
    with pytest.raises(ScoreError, match="do not match"):
        score_vqav2([{"question_id": q, "answer": "x"} for q in (1, 2)], anns, {"questions": [{"question_id": 1}]})
    with pytest.raises(ScoreError, match="record #0"):
        score_vqav2([{"qid": 1, "answer": "yes"}], anns)
