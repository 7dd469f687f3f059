"""Bad data through the real entry points: `vict data stats --verify-images`, `vict eval --skip-bad`, `vict train`
with `data.bad_input=skip`. Each corrupts a freshly generated world (an empty question, a truncated PNG, a
decompression-bomb PNG) and checks both policies: fail lists the problems naming file, record and field (exit 2, no
traceback); skip counts them exactly and goes on.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tiny_world import TINY

from vict.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--fast", "--max-new-tokens", "3", "--batch-size", "4"]


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, images=20, seed=0)  # 16 train / 2 val / 2 test images
    return out


@pytest.fixture
def world(clean_world: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean_world, tmp_path / "world"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.models.builders import build_tiny

    out = tmp_path_factory.mktemp("ckpt") / "final"
    build_tiny("lora", num_extra_queries=4, seed=0).save_pretrained(out)
    return out


def _questions(world: Path, split: str) -> Path:
    return world / "annotations" / f"{split}_balanced_questions.json"


def _empty_question(world: Path, split: str, image_id: str | None = None) -> str:
    """Blank the first question (of ``image_id``, if given); returns its id."""
    path = _questions(world, split)
    data = json.loads(path.read_text())
    qid = next(k for k, q in data.items() if image_id is None or q["imageId"] == image_id)
    data[qid]["question"] = ""
    path.write_text(json.dumps(data))
    return qid


def _image_files(world: Path, split: str) -> list[Path]:
    captions = json.loads((world / "annotations" / f"captions_{split}.json").read_text())
    return [world / "images" / img["file_name"] for img in captions["images"]]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bomb(path: Path) -> None:
    Image.new("1", (10_000, 10_000)).save(path)  # 100 Mpx > the default limit of 89,478,485; a few kB on disk


def test_data_stats_verify_images_fails_listing_every_problem_or_counts_them(world: Path, capsys) -> None:
    truncated, bomb = _image_files(world, "train")[:2]
    _truncate(truncated)
    _bomb(bomb)
    qid = _empty_question(world, "train")

    # Before: annotations only, images never opened. Now the empty question is found even without decoding.
    assert main(["data", "stats", str(world)]) == 2
    err = capsys.readouterr().err
    assert "found 1 input: empty_field=1" in err and f"question {qid!r}: field 'question' is empty" in err

    assert main(["data", "stats", str(world), "--verify-images"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    err = captured.err
    assert "found 3 inputs: empty_field=1, image_too_large=1, truncated_image=1" in err
    assert str(truncated) in err and str(bomb) in err and "100,000,000 pixels" in err
    assert str(_questions(world, "train")) in err and "--skip-bad" in err

    assert main(["data", "stats", str(world), "--verify-images", "--skip-bad", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["skipped"]["counts"] == {"empty_field": 1, "image_too_large": 1, "truncated_image": 1}
    assert stats["train"]["image_check"] == {"verified": 14, "bad": 2, "image_too_large": 1, "truncated_image": 1}
    assert stats["test"]["image_check"] == {"verified": 2, "bad": 0}
    assert stats["train"]["questions"] == 16 * 6 - 1

    assert main(["data", "stats", str(world), "--verify-images", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "images decoded: 14 ok, 2 bad (image_too_large=1, truncated_image=1)" in out
    assert "skipped 3 inputs" in out


def test_data_stats_verify_images_on_files_needs_an_images_folder(world: Path, capsys) -> None:
    captions = world / "annotations" / "captions_test.json"
    assert main(["data", "stats", "--captions", str(captions), "--verify-images"]) == 2
    assert "--verify-images needs --images-dir" in capsys.readouterr().err
    args = ["data", "stats", "--captions", str(captions), "--images-dir", str(world / "images"), "--verify-images"]
    assert main(args) == 0
    assert "images decoded: 2 ok, 0 bad" in capsys.readouterr().out


def test_eval_fails_naming_the_record_or_skips_and_counts_in_the_report(
    world: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    first, second = _image_files(world, "test")
    qid = _empty_question(world, "test", image_id=second.stem)
    base = ["eval", "--checkpoint", str(checkpoint), "--data", str(world), *FAST]

    # Before: a traceback from inside generation ("cannot answer: empty question"). Now: one line, before any model.
    assert main([*base, "--out", str(tmp_path / "fail")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("vict eval: error: ")
    assert str(_questions(world, "test")) in err and f"question {qid!r}: field 'question' is empty" in err
    assert "--skip-bad" in err and not (tmp_path / "fail").exists()

    _truncate(first)
    assert main([*base, "--out", str(tmp_path / "fail2")]) == 2
    err = capsys.readouterr().err
    assert str(first) in err and "truncated" in err and "Traceback" not in err

    out = tmp_path / "skip"
    assert main([*base, "--out", str(out), "--skip-bad"]) == 0
    (r,) = json.loads((out / "report.json").read_text())["models"].values()
    questions = json.loads(_questions(world, "test").read_text())
    of_first = sum(q["imageId"] == first.stem for q in questions.values())
    of_second = sum(q["imageId"] == second.stem for q in questions.values())
    assert r["skipped_inputs"]["counts"] == {"empty_field": 1, "image_skipped": of_first, "truncated_image": 1}
    assert r["n_images"] == 1 and r["n_questions"] == of_second - 1 and r["caption"]["n"] == 1
    assert any(note.startswith(f"Bad inputs skipped (--skip-bad): {of_first + 2} ") for note in r["notes"])
    assert "Bad inputs skipped" in (out / "report.md").read_text()


def test_eval_files_skip_bad_counts_bad_captions_and_images(checkpoint: Path, tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("real_files", ROOT / "tests" / "unit" / "eval" / "real_files.py")
    real_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_files)
    files = real_files.write_real_files(tmp_path / "real")
    official = json.loads(files["captions"].read_text())
    official["annotations"][0]["caption"] = None
    official["annotations"][1]["caption"] = 12345
    files["captions"].write_text(json.dumps(official))
    _truncate(files["gqa_images"] / "2354787.jpg")
    args = ["eval", "--checkpoint", str(checkpoint), "--captions", str(files["captions"])]
    args += ["--images", str(files["coco_images"]), "--questions", str(files["val_questions"])]
    args += ["--question-images", str(files["gqa_images"]), "--vg-image-data", str(files["vg"]), "--split", "val"]

    assert main([*args, "--out", str(tmp_path / "fail"), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{files['captions']}: annotations[0] (id 42000, image_id 42): field 'caption' is null" in err

    out = tmp_path / "skip"
    assert main([*args, "--out", str(out), "--skip-bad", *FAST]) == 0
    (r,) = json.loads((out / "report.json").read_text())["models"].values()
    # two bad captions; the VG-only image 2354787 is truncated, so its one balanced question is not asked
    assert r["skipped_inputs"]["counts"] == {"image_skipped": 1, "truncated_image": 1, "wrong_type": 2}
    assert r["n_images"] == 2 and r["n_questions"] == 2


def _train(world: Path, out: Path, *extra: str) -> int:
    argv = ["train", str(ROOT / "configs" / "world" / "vict_lora.yaml"), *TINY, f"data.world={world}"]
    argv += ["train.max_steps=12", "train.warmup_steps=2", "train.batch_size=4", f"train.output_dir={out}"]
    argv += ["data.val_split=null"]
    argv += ["train.eval_every=0", "train.sample_every=0", "train.save_every=0", "train.num_threads=1", *extra]
    return main(argv)


def test_training_skips_an_empty_question_and_counts_it(world: Path, tmp_path: Path, capsys, caplog) -> None:
    qid = _empty_question(world, "train")
    # Before: "ValueError: a 'qa_cap' prompt needs ['question']" a few steps in, even with data.bad_input=skip.
    with caplog.at_level(logging.WARNING, logger="vict.data"):
        assert _train(world, tmp_path / "skip", "data.bad_input=skip") == 0
    assert "skipped 1 input: empty_field=1" in caplog.text and f"question {qid!r}" in caplog.text
    capsys.readouterr()

    assert _train(world, tmp_path / "fail") == 2
    err = capsys.readouterr().err
    assert str(_questions(world, "train")) in err and f"question {qid!r}: field 'question' is empty" in err
    assert "data.bad_input=skip" in err and "Traceback" not in err
