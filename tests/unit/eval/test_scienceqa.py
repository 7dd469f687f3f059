"""ScienceQA: loader checks, prompt formats, answer extraction, the official category scorer and `vict score
scienceqa`, on a five-problem test split written by hand (expected accuracies worked out below)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from vict.cli import main
from vict.data.policy import DataError
from vict.data.scienceqa import (
    ScienceQAProblem,
    load_scienceqa,
    scienceqa_context,
    scienceqa_example,
    scienceqa_input,
    scienceqa_prompt_target,
)
from vict.eval.predictions import ScoreError
from vict.eval.scienceqa import (
    extract_answer_letter,
    extract_predictions,
    failed_index,
    letter_index,
    score_scienceqa,
)


def _problem(subject: str, hint: str, image: bool, grade: str, topic: str, choices: int, answer: int, split="test"):
    return {
        "question": f"Question about {topic}?",
        "choices": [f"choice {k}" for k in range(choices)],
        "answer": answer,
        "hint": hint,
        "image": "image.png" if image else None,
        "task": "closed choice",
        "grade": grade,
        "subject": subject,
        "topic": topic,
        "category": topic.title(),
        "skill": "a skill",
        "lecture": "A lecture.",
        "solution": "A solution.",
        "split": split,
    }


# pid: subject, context (TXT = hint, IMG = image), grade, topic. No test problem is in grades 7-12.
PROBLEMS = {
    "1": _problem("natural science", "", True, "grade2", "physics", 3, 0),  # IMG only
    "2": _problem("natural science", "A text.", True, "grade5", "physics", 4, 2),  # TXT and IMG
    "3": _problem("social science", "Some context.", False, "grade3", "geography", 2, 1),  # TXT only
    "4": _problem("language science", "", False, "grade6", "verbs", 3, 1),  # NO context
    "5": _problem("social science", "", False, "grade1", "geography", 4, 3),  # NO context
    "6": _problem("language science", "", True, "grade8", "verbs", 2, 0, split="train"),
}
PID_SPLITS = {"train": ["6"], "val": [], "test": ["4", "5", "1", "2", "3"], "minitest": ["1"]}
# 1 right, 2 wrong (1 != 2), 3 right, 4 LLaVA's failed -1, 5 right given as a letter ("D" = 3).
PREDICTIONS = {"1": 0, "2": 1, "3": 1, "4": -1, "5": "D"}
# With pid 4 wrong: NAT {1,2} 1/2, SOC {3,5} 2/2, LAN {4} 0/1, TXT {2,3} 1/2, IMG {1,2} 1/2, NO {4,5} 1/2,
# G1-6 all five 3/5, G7-12 none, Average 3/5.
EXPECTED_WRONG = {
    "NAT": (50.0, 1, 2),
    "SOC": (100.0, 2, 2),
    "LAN": (0.0, 0, 1),
    "TXT": (50.0, 1, 2),
    "IMG": (50.0, 1, 2),
    "NO": (50.0, 1, 2),
    "G1-6": (60.0, 3, 5),
    "G7-12": (None, 0, 0),
    "Average": (60.0, 3, 5),
}


def _write(root: Path, problems: dict | None = None, images: bool = True) -> Path:
    """problems.json + pid_splits.json (+ images/{split}/{pid}/image.png) under ``root``; returns problems.json."""
    problems = PROBLEMS if problems is None else problems
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps(PID_SPLITS))
    if images:
        for pid, p in problems.items():
            if p.get("image"):
                folder = root / "images" / p["split"] / pid
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "image.png").write_bytes(b"png")
    return root / "problems.json"


@pytest.fixture
def test_split(tmp_path: Path) -> list[ScienceQAProblem]:
    return load_scienceqa(_write(tmp_path))


def _categories(result: dict) -> dict:
    return {c: (v["accuracy"], v["correct"], v["count"]) for c, v in result["categories"].items()}


# ---- loader ----


def test_loader_reads_split_in_pid_splits_order(tmp_path: Path) -> None:
    problems = load_scienceqa(_write(tmp_path), split="test")
    assert [p.pid for p in problems] == ["4", "5", "1", "2", "3"]
    by_pid = {p.pid: p for p in problems}
    assert by_pid["1"].image == tmp_path / "images" / "test" / "1" / "image.png"
    assert by_pid["4"].image is None and by_pid["4"].hint == ""
    assert by_pid["2"].choices == ("choice 0", "choice 1", "choice 2", "choice 3") and by_pid["2"].answer == 2
    assert by_pid["2"].answer_letter == "C" and by_pid["2"].has_text and by_pid["2"].has_image
    assert (by_pid["3"].subject, by_pid["3"].topic, by_pid["3"].grade, by_pid["3"].split) == (
        "social science",
        "geography",
        "grade3",
        "test",
    )
    train = load_scienceqa(tmp_path / "problems.json", split="train")
    assert [(p.pid, p.image) for p in train] == [("6", tmp_path / "images" / "train" / "6" / "image.png")]


def test_loader_missing_image_names_the_path(tmp_path: Path) -> None:
    path = _write(tmp_path)
    missing = tmp_path / "images" / "test" / "2" / "image.png"
    missing.unlink()
    with pytest.raises(DataError) as info:
        load_scienceqa(path)
    message = str(info.value)
    assert "problem '2' names image 'image.png'" in message and f"{missing} does not exist" in message
    assert "images/test.zip" in message and str(path) in message
    assert len(load_scienceqa(path, check_images=False)) == 5  # scoring does not need the images


def test_loader_collects_every_invalid_problem(tmp_path: Path) -> None:
    problems = copy.deepcopy(PROBLEMS)
    problems["3"]["answer"] = 2  # two choices: 0..1
    problems["4"]["choices"] = ["only one"]
    del problems["5"]["hint"]
    with pytest.raises(DataError) as info:
        load_scienceqa(_write(tmp_path, problems))
    message = str(info.value)
    assert "3 problems of 5 are invalid" in message
    assert "problem '3': answer 2 is not a 0-based index into its 2 choices (0..1)" in message
    assert "problem '4': has 1 choices; a problem needs 2 to 5" in message
    assert "problem '5' has no ['hint']" in message


def test_loader_split_errors(tmp_path: Path) -> None:
    path = _write(tmp_path)
    with pytest.raises(
        DataError, match=r"split 'dev' is unknown; the file has \['minitest', 'test', 'train', 'val'\]"
    ):
        load_scienceqa(path, split="dev")
    problems = copy.deepcopy(PROBLEMS)
    problems["1"]["split"] = "val"  # listed under minitest, so its own split must be test
    with pytest.raises(DataError, match=r"problem '1' has split 'val' but .* lists it under 'minitest'"):
        load_scienceqa(_write(tmp_path, problems), split="minitest", check_images=False)
    problems["1"]["split"] = "dev"
    with pytest.raises(DataError, match=r"problem '1': split 'dev' is not one of \['train', 'val', 'test'\]"):
        load_scienceqa(_write(tmp_path, problems), split="minitest", check_images=False)


def test_loader_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"problems.json not found"):
        load_scienceqa(tmp_path / "problems.json")
    (tmp_path / "problems.json").write_text(json.dumps(PROBLEMS))
    with pytest.raises(DataError, match=r"pid_splits.json: ScienceQA pid_splits.json not found"):
        load_scienceqa(tmp_path / "problems.json")


# ---- prompts (formats.md 4b, on pid 1 of the real file) ----

PID1 = ScienceQAProblem(
    pid="1",
    question="Which of these states is farthest north?",
    choices=("West Virginia", "Louisiana", "Arizona", "Oklahoma"),
    answer=0,
    hint="",
    image=Path("images/train/1/image.png"),
    subject="social science",
    topic="geography",
    category="Geography",
    grade="grade2",
    lecture="Maps have four cardinal directions.\nA compass rose is a set of arrows.",
    solution="Look at the compass rose. West Virginia is farthest north.",
    split="train",
)
QCM = (
    "Question: Which of these states is farthest north?\nContext: N/A\n"
    "Options: (A) West Virginia (B) Louisiana (C) Arizona (D) Oklahoma\n"
)


def test_context_is_hint_plus_caption_or_na() -> None:
    assert scienceqa_context(PID1) == "N/A"
    assert scienceqa_context(PID1, caption="An aerial view.") == "An aerial view."
    hinted = replace(PID1, hint="Use the map.")
    assert scienceqa_context(hinted) == "Use the map."
    assert scienceqa_context(hinted, caption="An aerial view.") == "Use the map. An aerial view."


def test_reference_example_texts() -> None:
    assert scienceqa_example(PID1, "QCM-ALE", test_example=True) == QCM + "Answer:"
    lecture = "Maps have four cardinal directions.\\nA compass rose is a set of arrows."  # "\n" as two characters
    assert scienceqa_example(PID1, "QCM-ALE") == (
        QCM + f"Answer: The answer is A. BECAUSE: {lecture} Look at the compass rose. West Virginia is farthest north."
    )
    assert scienceqa_example(PID1, "QCM-A") == QCM + "Answer: The answer is A."
    # the reasoning-first outputs: the solution (and lecture) before the letter
    solution = "Look at the compass rose. West Virginia is farthest north."
    assert scienceqa_example(PID1, "QCM-EA") == QCM + f"Answer: {solution} The answer is A."
    assert scienceqa_example(PID1, "QCM-LEA") == QCM + f"Answer: {lecture} {solution} The answer is A."
    assert scienceqa_input(PID1, "CQM-A") == (
        "Context: N/A\nQuestion: Which of these states is farthest north?\n"
        "Options: (A) West Virginia (B) Louisiana (C) Arizona (D) Oklahoma\n"
    )
    with pytest.raises(ValueError, match="format 'QCM-LEPA' is not supported"):
        scienceqa_example(PID1, "QCM-LEPA")


def test_lavin_prompt_and_target() -> None:
    prompt, target = scienceqa_prompt_target(PID1, "QCM-A")
    assert prompt == QCM + "Response:" and target == "The answer is A."
    _, target = scienceqa_prompt_target(PID1, "QCM-ALE")
    assert target.startswith("The answer is A. BECAUSE: Maps have four cardinal directions.\\nA compass")
    no_explanation = replace(PID1, lecture="", solution="")
    assert scienceqa_prompt_target(no_explanation, "QCM-ALE")[1] == "The answer is A."  # empty BECAUSE: dropped
    assert scienceqa_prompt_target(no_explanation, "QCM-EA")[1] == "The answer is A."
    _, target = scienceqa_prompt_target(PID1, "CQM-EA")
    assert target == "Look at the compass rose. West Virginia is farthest north. The answer is A."
    assert extract_answer_letter(target) == "A"


# ---- extraction ----


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is B. BECAUSE: the compass.", "B"),
        ("The answer is B. Or rather, the answer is C.", "B"),  # first match
        ("The answer is B. The answer is C.", "B"),
        ("C", "C"),
        (" D\n", "D"),
        ("A. West Virginia", "A"),
        ("The answer is Z.", "Z"),  # found, but invalid for any problem
        ("I think it is B", None),
        ("The answer is B", None),  # the reference regex needs one character after the letter
        ("", None),
    ],
)
def test_extract_answer_letter(text: str, letter: str | None) -> None:
    assert extract_answer_letter(text) == letter


def test_letter_index_respects_the_number_of_choices() -> None:
    assert letter_index("C", 3) == 2 and letter_index("D", 3) is None and letter_index(None, 5) is None


def test_failed_random_is_seeded_valid_and_varies() -> None:
    draws = [failed_index("4", 3, "random", seed) for seed in range(60)]
    assert draws == [failed_index("4", 3, "random", seed) for seed in range(60)]  # reproducible
    assert set(draws) == {0, 1, 2}  # every option can be drawn, and only valid ones
    assert failed_index("4", 3, "wrong", 7) == -1
    with pytest.raises(ScoreError, match="unknown ScienceQA failed-answer rule 'skip'"):
        failed_index("4", 3, "skip")  # type: ignore[arg-type]


def test_extract_predictions_reports_failures(test_split: list[ScienceQAProblem]) -> None:
    texts = {
        "1": "The answer is A. BECAUSE: ...",
        "2": "B",
        "3": "The answer is E.",  # two choices: invalid
        "4": "no idea",
        "5": "D. choice 3",
    }
    wrong = extract_predictions(texts, test_split, failed="wrong")
    assert wrong.results == {"1": 0, "2": 1, "3": -1, "4": -1, "5": 3}
    assert wrong.failed == ["3", "4"] and wrong.n_failed == 2
    rand = extract_predictions(texts, test_split, failed="random", seed=3)
    assert rand.failed == ["3", "4"]
    assert rand.results["3"] in (0, 1) and rand.results["4"] in (0, 1, 2)
    assert rand.results == extract_predictions(texts, test_split, failed="random", seed=3).results
    with pytest.raises(ScoreError, match=r"1 pids are not problems of the split \(e.g. \['6'\]\)"):
        extract_predictions({"6": "A"}, test_split)


# ---- scorer ----


def test_categories_by_hand_failed_counts_wrong(test_split: list[ScienceQAProblem]) -> None:
    result = score_scienceqa(PREDICTIONS, test_split, failed="wrong")
    assert _categories(result) == EXPECTED_WRONG
    assert result["accuracy"] == 60.0 and result["n"] == 5 and result["correct"] == 3 and result["failed"] == 1
    assert result["by_topic"] == {
        "geography": {"accuracy": 100.0, "correct": 2, "count": 2},
        "physics": {"accuracy": 50.0, "correct": 1, "count": 2},
        "verbs": {"accuracy": 0.0, "correct": 0, "count": 1},
    }
    # The results-file layout scores the same; pids outside the split are ignored and counted.
    wrapped = score_scienceqa({"results": {**PREDICTIONS, "6": 0}, "acc": 1.0}, test_split, failed="wrong")
    assert _categories(wrapped) == EXPECTED_WRONG and wrapped["ignored"] == 1


def test_failed_random_scores_the_seeded_draw(test_split: list[ScienceQAProblem]) -> None:
    # Pid 4 (LAN, NO, 3 choices, answer 1) is the only failed answer: it is right iff the draw is 1.
    outcomes = set()
    for seed in range(20):
        result = score_scienceqa(PREDICTIONS, test_split, failed="random", seed=seed)
        hit = failed_index("4", 3, "random", seed) == 1
        outcomes.add(hit)
        assert result["categories"]["LAN"]["accuracy"] == (100.0 if hit else 0.0)
        assert result["categories"]["NO"]["accuracy"] == (100.0 if hit else 50.0)
        assert result["accuracy"] == (80.0 if hit else 60.0) and result["failed"] == 1
        assert result == score_scienceqa(PREDICTIONS, test_split, failed="random", seed=seed)
    assert outcomes == {True, False}


def test_invalid_letters_and_indices_are_failed_answers(test_split: list[ScienceQAProblem]) -> None:
    preds = {**PREDICTIONS, "1": "E", "3": 7, "5": "FAILED"}  # 1 has 3 choices, 3 has 2
    result = score_scienceqa(preds, test_split, failed="wrong")
    assert result["failed"] == 4 and result["correct"] == 0


def test_missing_and_malformed_predictions(test_split: list[ScienceQAProblem]) -> None:
    partial = {k: v for k, v in PREDICTIONS.items() if k not in ("2", "3")}
    with pytest.raises(
        ScoreError, match=r"missing predictions for 2 of 5 problems of the split \(e.g. \['2', '3'\]\)"
    ):
        score_scienceqa(partial, test_split)
    result = score_scienceqa(partial, test_split, failed="wrong", allow_missing=True)
    assert result["missing"] == 2 and result["failed"] == 3 and result["correct"] == 2
    assert result["categories"]["TXT"] == {"accuracy": 0.0, "correct": 0, "count": 2}
    with pytest.raises(ScoreError, match=r"1 values are neither .* \[\('2', 'b'\)\]"):
        score_scienceqa({**PREDICTIONS, "2": "b"}, test_split)
    with pytest.raises(ScoreError, match=r"\[\('2', True\)\]"):
        score_scienceqa({**PREDICTIONS, "2": True}, test_split)
    with pytest.raises(ScoreError, match="got a list"):
        score_scienceqa([0, 1], test_split)  # type: ignore[arg-type]


# ---- vict score scienceqa ----


def test_cli_results_layout_table(tmp_path: Path, capsys) -> None:
    problems = _write(tmp_path, images=False)  # scoring needs no images
    (tmp_path / "preds.json").write_text(json.dumps({"acc": 60.0, "results": PREDICTIONS}))
    args = ["score", "scienceqa", "--predictions", str(tmp_path / "preds.json"), "--problems", str(problems)]
    assert main([*args, "--failed", "wrong"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "5 problems; 1 failed answers scored by rule 'wrong'" in lines[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines if "|" in line}
    assert rows["Average"] == ["60.00", "3", "5"] and rows["SOC"] == ["100.00", "2", "2"]
    assert rows["TXT"] == ["50.00", "1", "2"] and rows["G7-12"] == ["n/a", "0", "0"]
    assert rows["geography"] == ["100.00", "2", "2"] and rows["verbs"] == ["0.00", "0", "1"]


def test_cli_bare_layout_json(tmp_path: Path, capsys) -> None:
    problems = _write(tmp_path, images=False)
    (tmp_path / "preds.json").write_text(json.dumps(PREDICTIONS))
    args = ["score", "scienceqa", "--predictions", str(tmp_path / "preds.json"), "--problems", str(problems)]
    args += ["--pid-splits", str(tmp_path / "pid_splits.json"), "--split", "test", "--failed", "wrong", "--json"]
    assert main([*args, "--out", str(tmp_path / "report.json")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert _categories(report) == EXPECTED_WRONG and report["split"] == "test"
    assert report["by_topic"]["physics"] == {"accuracy": 50.0, "correct": 1, "count": 2}
    assert json.loads((tmp_path / "report.json").read_text()) == report and "wrote" in captured.err
    # The default rule is the reference's seeded random choice.
    assert main([*args[:-3], "--json", "--seed", "5"]) == 0
    seeded = json.loads(capsys.readouterr().out)
    assert seeded["failed_rule"] == "random" and seeded["seed"] == 5
    assert seeded["accuracy"] == (80.0 if failed_index("4", 3, "random", 5) == 1 else 60.0)


def test_cli_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    problems = _write(tmp_path, images=False)
    (tmp_path / "preds.json").write_text(json.dumps({"1": 0}))
    args = ["score", "scienceqa", "--predictions", str(tmp_path / "preds.json"), "--problems", str(problems)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"ScienceQA predictions {tmp_path / 'preds.json'}: missing predictions for 4 of 5" in err
    assert "--allow-missing" in err
    assert main([*args, "--allow-missing", "--failed", "wrong", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 4
    assert main([*args, "--split", "dev"]) == 2
    assert "split 'dev' is unknown" in capsys.readouterr().err


def test_cli_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "scienceqa", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--failed {random,wrong}" in out and "--pid-splits" in out
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "vict score scienceqa --predictions" in capsys.readouterr().out


def test_a_lowercasing_tokenizer_reads_letters_case_insensitively_only_when_asked() -> None:
    from vict.eval.scienceqa import extract_answer_letter, lowercases

    assert extract_answer_letter("the answer is b.") is None  # the official rule is case-sensitive
    assert extract_answer_letter("the answer is b.", ignore_case=True) == "B"
    assert extract_answer_letter("The answer is C. because", ignore_case=True) == "C"

    class Lower:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(text.lower().encode())}

        def decode(self, ids):
            return bytes(ids).decode()

    class Keep(Lower):
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(text.encode())}

    assert lowercases(Lower()) and not lowercases(Keep()) and not lowercases(None)
