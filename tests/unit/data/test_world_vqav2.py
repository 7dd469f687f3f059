"""The world's held-out questions in the VQA v2 format: the official file layout, ids shared with the COCO files,
and ten honest human answers that the official scorer rewards as VQA's rules say."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from vict.data.world import generate_world
from vict.data.world.layout import VQAV2_SPLITS, vqav2_files, world_files
from vict.data.world.vqav2 import MAX_PARAPHRASES, human_answers, vqav2_split
from vict.eval.vqa import normalize_answer, score_vqav2, vqa_accuracy


def _files(world: Path, split: str) -> tuple[dict, dict]:
    files = vqav2_files(world, split)
    return json.loads(files["questions"].read_text()), json.loads(files["annotations"].read_text())


def _gqa(world: Path, split: str) -> dict[str, dict]:
    return json.loads(world_files(world, split)["questions"].read_text())


def _leave_one_out(pred: str, answers: list[str]) -> float:
    """min(#humans / 3, 1) averaged over the ten subsets of nine, on normalised answers (humans disagree)."""
    norm = [normalize_answer(a) for a in answers]
    p = normalize_answer(pred)
    return sum(min(1.0, sum(a == p for j, a in enumerate(norm) if j != i) / 3) for i in range(len(norm))) / len(norm)


@pytest.mark.parametrize("split", VQAV2_SPLITS)
def test_files_follow_the_official_format(world_dir: Path, split: str) -> None:
    questions, annotations = _files(world_dir, split)
    assert set(questions) == {"info", "task_type", "data_type", "data_subtype", "questions", "license"}
    assert set(annotations) == {"info", "license", "data_type", "data_subtype", "annotations"}
    assert questions["task_type"] == "Open-Ended" and questions["data_type"] == annotations["data_type"] == "mscoco"
    assert questions["data_subtype"] == annotations["data_subtype"] == split
    gqa = _gqa(world_dir, split)
    coco_ids = {im["id"] for im in json.loads(world_files(world_dir, split)["captions"].read_text())["images"]}
    assert [q["question_id"] for q in questions["questions"]] == [int(qid) for qid in gqa]
    assert [a["question_id"] for a in annotations["annotations"]] == [int(qid) for qid in gqa]
    for q, ann in zip(questions["questions"], annotations["annotations"], strict=True):
        g = gqa[str(q["question_id"])]
        assert set(q) == {"image_id", "question", "question_id"}
        assert isinstance(q["image_id"], int) and q["image_id"] in coco_ids and q["image_id"] == int(g["imageId"])
        assert q["question"] == g["question"] and ann["image_id"] == q["image_id"]
        assert set(ann) == {
            "question_type",
            "multiple_choice_answer",
            "answers",
            "image_id",
            "answer_type",
            "question_id",
        }
        assert ann["multiple_choice_answer"] == g["answer"]
        expected_type = "yes/no" if g["answer"] in ("yes", "no") else "number" if g["answer"].isdigit() else "other"
        assert ann["answer_type"] == expected_type
        assert q["question"].lower().startswith(ann["question_type"])
        assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
        for a in ann["answers"]:
            assert set(a) == {"answer", "answer_confidence", "answer_id"}
            assert a["answer_confidence"] in ("yes", "maybe", "no") and a["answer"]


@pytest.mark.parametrize("split", VQAV2_SPLITS)
def test_true_answers_score_100_and_wrong_answers_0(world_dir: Path, split: str) -> None:
    questions, annotations = _files(world_dir, split)
    gqa = _gqa(world_dir, split)
    truth = [{"question_id": int(qid), "answer": q["answer"]} for qid, q in gqa.items()]
    report = score_vqav2(truth, annotations, questions)
    assert report["overall"] == 100.0 and report["n"] == len(gqa)
    assert set(report["per_answer_type"]) <= {"yes/no", "number", "other"}
    wrong = [{"question_id": int(qid), "answer": "zebra"} for qid in gqa]
    assert score_vqav2(wrong, annotations, questions)["overall"] == 0.0


def test_paraphrases_earn_the_official_partial_credit(world_dir: Path) -> None:
    credits: Counter = Counter()
    for split in VQAV2_SPLITS:
        _, annotations = _files(world_dir, split)
        for ann in annotations["annotations"]:
            answers = [a["answer"] for a in ann["answers"]]
            truth = normalize_answer(ann["multiple_choice_answer"])
            paraphrased = sorted({a for a in answers if normalize_answer(a) != truth})
            assert len([a for a in answers if normalize_answer(a) != truth]) <= MAX_PARAPHRASES
            for para in paraphrased:
                k = sum(normalize_answer(a) == normalize_answer(para) for a in answers)
                expected = _leave_one_out(para, answers)
                assert expected == pytest.approx({1: 0.3, 2: 0.6, 3: 0.9}[k])
                report = score_vqav2([{"question_id": ann["question_id"], "answer": para}], [ann])
                assert report["overall"] == round(100 * expected, 2)
                credits[k] += 1
    assert credits[1] > 0 and credits[2] > 0, credits


def test_other_spellings_match_when_the_humans_disagree() -> None:
    rng = random.Random(0)
    seen_spellings = Counter()
    for question, answer in [
        ("How many circles are there?", "2"),
        ("How many red objects are there?", "0"),
        ("Is there a red circle?", "yes"),
        ("What shape is the red object?", "circle"),
        ("What colour is the circle?", "purple"),
        ("What size is the circle?", "large"),
    ] * 40:
        answers = human_answers(answer, question, rng)
        assert len(answers) == 10
        assert sum(normalize_answer(a) == normalize_answer(answer) for a in answers) >= 10 - MAX_PARAPHRASES
        assert vqa_accuracy(answer, answers) == 1.0
        seen_spellings.update(a for a in answers if a != answer and normalize_answer(a) == normalize_answer(answer))
        if len(set(answers)) > 1 and answer == "2":
            assert vqa_accuracy("two", answers) == 1.0  # "two" -> "2" by the official manualMap
    assert {"two", "zero", "none", "Yes", "yes.", "a circle", "the circle", "Purple", "large."} <= set(seen_spellings)


def test_same_seed_same_files_other_seed_differs(world_dir: Path) -> None:
    gqa = _gqa(world_dir, "test")
    assert vqav2_split(gqa, "test", seed=0) == vqav2_split(gqa, "test", seed=0)
    assert vqav2_split(gqa, "test", seed=0)[1] != vqav2_split(gqa, "test", seed=1)[1]
    assert vqav2_split(gqa, "test", seed=0)[0]["questions"] == vqav2_split(gqa, "test", seed=1)[0]["questions"]


def test_overwrite_replaces_vqav2(tmp_path: Path) -> None:
    generate_world(tmp_path, images=20, seed=0)
    generate_world(tmp_path, images=10, seed=0, overwrite=True)
    questions, _ = _files(tmp_path, "test")
    assert {q["image_id"] for q in questions["questions"]} == {10}
    with pytest.raises(ValueError, match="val"):
        vqav2_files(tmp_path, "train")
