"""`vict eval` on the miniature world with a tiny VICT checkpoint: predictions, both reports, every key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vict.cli import main

pytestmark = pytest.mark.integration

SETTINGS = ("none", "caption", "self", "qa", "dense", "distractor")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world.generate import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=20, seed=0)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.models.builders import build_tiny

    out = tmp_path_factory.mktemp("ckpt") / "final"
    build_tiny("lora", num_extra_queries=4, seed=0).save_pretrained(out)
    return out


def test_eval_writes_both_reports_with_all_keys(world: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(world), "--out", str(out)]
    rc = main([*args, "--limit", "2", "--max-new-tokens", "4", "--fast", "--batch-size", "4"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    (name,) = report["models"]
    r = report["models"][name]
    assert r["kind"] == "vict" and r["split"] == "test" and r["n_images"] == 2
    questions = json.loads((world / "annotations" / "test_balanced_questions.json").read_text())
    captions = json.loads((world / "annotations" / "captions_test.json").read_text())
    first_two = {str(im["id"]) for im in captions["images"][:2]}
    n_q = sum(1 for q in questions.values() if q["imageId"] in first_two)
    assert r["n_questions"] == n_q > 0
    assert {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE", "n", "notes"} <= set(
        r["caption"]
    )
    assert r["caption"]["n"] == 2 and r["caption"]["METEOR"] is None and "METEOR" in r["caption"]["notes"]
    assert set(r["gqa"]) == set(SETTINGS)
    for setting in SETTINGS:
        for rule in ("vqa", "official"):
            score = r["gqa"][setting][rule]
            assert {"accuracy", "by_structural", "by_semantic", "n"} <= set(score) and score["n"] == n_q
            assert 0.0 <= score["accuracy"] <= 100.0
        by_type = r["gqa"][setting]["by_type"]
        assert sum(v["count"] for k, v in by_type.items() if k.startswith("structural/")) == n_q
        assert by_type["binary"]["count"] + by_type["open"]["count"] == n_q and r["gqa"][setting]["skipped"] == 0
        records = json.loads(Path(r["predictions"][f"gqa_{setting}_test_predictions.json"]).read_text())
        assert all(rec["context"]["kind"] in ("none", "caption", "self", "qa") for rec in records)
    assert {"exact", "answer_in_sentence", "n"} <= set(r["gqa_sentence"])
    # Prediction files are in the official formats and rescore to the same numbers.
    files = r["predictions"]
    preds = json.loads(Path(files["gqa_none_test_predictions.json"]).read_text())
    assert {p["questionId"] for p in preds} == {q for q, v in questions.items() if v["imageId"] in first_two}
    rescored = tmp_path / "rescored.json"
    qfile = world / "annotations" / "test_balanced_questions.json"
    pfile = files["gqa_none_test_predictions.json"]
    assert (
        main(
            [
                "score",
                "gqa",
                "--predictions",
                pfile,
                "--questions",
                str(qfile),
                "--rule",
                "vqa",
                "--out",
                str(rescored),
            ]
        )
        == 0
    )
    assert json.loads(rescored.read_text()) == r["gqa"]["none"]["vqa"]  # the test split has exactly 2 images
    results = json.loads(Path(files["captions_test_results.json"]).read_text())
    assert [res["image_id"] for res in results] == [im["id"] for im in captions["images"][:2]]
    md = (out / "report.md").read_text()
    assert "Table 1" in md and "Table 2" in md and "| none" in md and "Gold caption" in md
    whole = tmp_path / "whole"  # prefix reuse (the default) changes no prediction
    assert (
        main(
            [
                *args[:-1],
                str(whole),
                "--limit",
                "2",
                "--max-new-tokens",
                "4",
                "--fast",
                "--batch-size",
                "4",
                "--no-prefix-reuse",
            ]
        )
        == 0
    )
    for name in files:
        if name.startswith("gqa_"):
            assert (whole / Path(files[name]).relative_to(out)).read_text() == Path(files[name]).read_text(), name
    assert "| distractor |" in md and "structural: query" in md
    assert "wrote" in capsys.readouterr().out


def test_gold_caption_is_first_non_dense(world: Path) -> None:
    from vict.eval.splits import load_eval_split

    split = load_eval_split(world, "test", limit=3)
    captions = json.loads((world / "annotations" / "captions_test.json").read_text())
    for im in split.images:
        anns = [a for a in captions["annotations"] if a["image_id"] == im.image_id]
        assert anns[0]["dense"] and not anns[1]["dense"]
        assert im.gold_caption == anns[1]["caption"]


def test_eval_bad_input_exits_2(world: Path, tmp_path: Path, capsys) -> None:
    assert main(["eval", "--data", str(world)]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--data", str(tmp_path / "nowhere")]) == 2
    assert "vict data world" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--data", str(world), "--tasks", "vqa"]) == 2
    assert "--tasks" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--data", str(world), "--gqa-settings", "none,gold"]) == 2
    assert "--gqa-settings" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--data", str(world)]) == 2
    assert "not a VICT checkpoint" in capsys.readouterr().err
