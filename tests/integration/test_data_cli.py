"""`vict data world|stats|show` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vict.cli import main

pytestmark = pytest.mark.integration


def test_world_stats_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "world"
    assert main(["data", "world", "--out", str(out), "--images", "30", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 30 images (64x64)" in printed and "blind baselines on test" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 30 and {s: v["images"] for s, v in summary["splits"].items()} == {
        "train": 24,
        "val": 3,
        "test": 3,
    }
    assert len(list((out / "images").glob("*.png"))) == 30

    assert main(["data", "stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train: 24 images, 120 captions" in printed
    assert "join: 24 images with captions and questions, 0 captions only, 0 questions only" in printed

    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["test"]["join"]["both"] == 3 and stats["skipped"]["total"] == 0

    assert main(["data", "show", str(out), "--n", "2"]) == 0
    printed = capsys.readouterr().out
    for kind in ("cap", "qa", "qa_cap", "cap_qa", "qa_qa"):
        assert f"=== {kind} (" in printed
    assert printed.count("  prompt: <image>") == 10 and printed.count("  target: ") == 10


def test_errors_are_one_line_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    assert main(["data", "world", "--out", str(out), "--images", "3"]) == 0
    capsys.readouterr()
    assert main(["data", "world", "--out", str(out), "--images", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "show", str(tmp_path / "nowhere")]) == 2
    assert "vict data world --out" in capsys.readouterr().err
    assert main(["data", "world", "--out", str(tmp_path / "x"), "--images", "0"]) == 2
    assert "images=0" in capsys.readouterr().err


def test_help_has_worked_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["data", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for sub in ("world", "stats", "show"):
        assert f"vict data {sub}" in text
