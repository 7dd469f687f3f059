"""`vict eval` on real-format files (COCO captions, GQA questions, VG join) with a tiny VICT checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vict.cli import main

pytestmark = pytest.mark.integration

# The official-format fixture files are shared with tests/unit/eval (no package there: load the helper by path).
_spec = importlib.util.spec_from_file_location(
    "eval_real_files", Path(__file__).resolve().parents[1] / "unit" / "eval" / "real_files.py"
)
real_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real_files)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return real_files.write_real_files(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.models.builders import build_tiny

    out = tmp_path_factory.mktemp("ckpt") / "final"
    build_tiny("lora", num_extra_queries=4, seed=0).save_pretrained(out)
    return out


FAST = ["--fast", "--max-new-tokens", "3", "--batch-size", "4"]


def test_eval_on_coco_and_gqa_files_joined_through_vg(files, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(checkpoint), "--captions", str(files["captions"])]
    args += ["--images", str(files["coco_images"]), "--questions", str(files["val_questions"])]
    args += ["--question-images", str(files["gqa_images"]), "--vg-image-data", str(files["vg"]), "--split", "val"]
    assert main([*args, "--out", str(out), *FAST]) == 0
    (r,) = json.loads((out / "report.json").read_text())["models"].values()
    assert r["n_images"] == 3 and r["n_questions"] == 3 and r["split"] == "val"
    assert r["caption"]["n"] == 2  # the two COCO images; the VG-only image is captioned for `self` only
    assert r["gqa"]["none"]["vqa"]["n"] == r["gqa"]["self"]["vqa"]["n"] == 3
    assert r["gqa"]["caption"]["vqa"]["n"] == 2  # question 204's image has no COCO caption
    assert any("`caption` setting scored on 2 of 3 questions" in note for note in r["notes"])
    results = json.loads(Path(r["predictions"]["captions_val_results.json"]).read_text())
    assert [x["image_id"] for x in results] == [42, 73]
    # The written results score against the official annotation file with `vict score`, to the same numbers.
    rescored = tmp_path / "rescored.json"
    score = ["score", "caption", "--predictions", r["predictions"]["captions_val_results.json"]]
    assert main([*score, "--annotations", str(files["captions"]), "--fast", "--out", str(rescored)]) == 0
    again = json.loads(rescored.read_text())
    assert {k: again[k] for k in ("BLEU-1", "CIDEr")} == {k: r["caption"][k] for k in ("BLEU-1", "CIDEr")}
    md = (out / "report.md").read_text()
    assert "scored on 2 of 3 questions" in md and "captions=" in md


def test_eval_on_gqa_testdev_skips_the_caption_setting(files, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(checkpoint), "--questions", str(files["testdev_questions"])]
    args += ["--images", str(files["gqa_images"]), "--tasks", "gqa", "--no-sentence"]
    assert main([*args, "--out", str(out), *FAST]) == 0
    (r,) = json.loads((out / "report.json").read_text())["models"].values()
    # testdev images have no COCO caption (no caption/distractor) and no dense caption; their two questions
    # give each other the `qa` context.
    assert set(r["gqa"]) == {"none", "self", "qa"} and r["caption"] is None
    assert r["gqa"]["qa"]["vqa"]["n"] == 2 and r["gqa"]["qa"]["skipped"] == 0
    assert r["gqa"]["self"]["official"]["n"] == 2
    md = (out / "report.md").read_text()
    assert "GQA `caption` setting skipped" in md and "| none" in md
    assert "GQA `dense` setting skipped" in md and "GQA `distractor` setting skipped" in md


def test_eval_file_arguments_bad_input_exits_2(files, checkpoint: Path, tmp_path: Path, capsys) -> None:
    base = ["eval", "--checkpoint", str(checkpoint)]
    assert main([*base, "--data", str(tmp_path), "--captions", str(files["captions"])]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*base, "--captions", str(files["captions"]), "--tasks", "caption"]) == 2
    assert "--images DIR is needed" in capsys.readouterr().err
    assert main([*base, "--questions", str(files["val_questions"]), "--images", str(tmp_path), "--tasks", "gqa"]) == 2
    assert "images not found" in capsys.readouterr().err
    assert main(base) == 2
    assert "no data" in capsys.readouterr().err
