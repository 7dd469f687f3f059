"""`vict score caption|gqa|vqav2` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vict.cli import main


def test_score_caption_writes_report(caption_files: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred, ann = caption_files
    out = tmp_path / "report.json"
    rc = main(["score", "caption", "--predictions", str(pred), "--annotations", str(ann), "--fast", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE"} <= set(report)
    assert report["METEOR"] is None and report["BLEU-4"] > 0
    printed = capsys.readouterr().out
    # --out holds pycocoevalcap's own numbers (0-1); the printed table shows them x100
    assert 0 < report["BLEU-1"] <= 1 and "score (x100)" in printed
    assert "CIDEr" in printed and f"{100 * report['CIDEr']:.2f}" in printed


def test_score_gqa_rules(tmp_path: Path, capsys) -> None:
    questions = {
        "q1": {"answer": "yes", "isBalanced": True, "types": {"structural": "verify", "semantic": "rel"}},
        "q2": {"answer": "2", "isBalanced": True, "types": {"structural": "query", "semantic": "attr"}},
    }
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "p.json").write_text(
        json.dumps([{"questionId": "q1", "prediction": "yes"}, {"questionId": "q2", "prediction": "two"}])
    )
    args = ["score", "gqa", "--predictions", str(tmp_path / "p.json"), "--questions", str(tmp_path / "q.json")]
    assert main([*args, "--out", str(tmp_path / "official.json")]) == 0
    assert main([*args, "--rule", "vqa", "--out", str(tmp_path / "vqa.json")]) == 0
    official = json.loads((tmp_path / "official.json").read_text())
    vqa = json.loads((tmp_path / "vqa.json").read_text())
    assert {"accuracy", "by_structural", "by_semantic", "n"} <= set(official)
    assert official["accuracy"] == 50.0 and vqa["accuracy"] == 100.0
    assert "semantic: relation" in capsys.readouterr().out


def test_score_gqa_missing_prediction_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "q.json").write_text(json.dumps({"q1": {"answer": "yes"}, "q2": {"answer": "no"}}))
    (tmp_path / "p.json").write_text(json.dumps([{"questionId": "q1", "prediction": "yes"}]))
    rc = main(["score", "gqa", "--predictions", str(tmp_path / "p.json"), "--questions", str(tmp_path / "q.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing predictions for 1 of 2" in err and "q2" in err


def test_score_vqav2(tmp_path: Path) -> None:
    answers = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(["2"] * 2 + ["3"] * 8)]
    anns = {"annotations": [{"question_id": 5, "answers": answers, "answer_type": "number", "question_type": "how"}]}
    (tmp_path / "a.json").write_text(json.dumps(anns))
    (tmp_path / "p.json").write_text(json.dumps([{"question_id": 5, "answer": "two"}]))
    out = tmp_path / "r.json"
    args = ["--predictions", str(tmp_path / "p.json"), "--annotations", str(tmp_path / "a.json"), "--out", str(out)]
    assert main(["score", "vqav2", *args]) == 0
    report = json.loads(out.read_text())
    assert report == {"overall": 60.0, "per_answer_type": {"number": 60.0}, "per_question_type": {"how": 60.0}, "n": 1}


def test_missing_file_exits_2(tmp_path: Path, capsys) -> None:
    rc = main(["score", "gqa", "--predictions", str(tmp_path / "nope.json"), "--questions", str(tmp_path / "q.json")])
    assert rc == 2 and "file not found" in capsys.readouterr().err


def test_top_level_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "vict score gqa --predictions" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["caption", "gqa", "vqav2"])
def test_help_has_examples(task: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", task, "--help"])
    assert exit_info.value.code == 0
    assert "--predictions" in capsys.readouterr().out
