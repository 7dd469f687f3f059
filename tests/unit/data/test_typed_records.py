"""Every annotation record is type-checked at load: a wrong type never becomes training data.

Each case corrupts one field of a tiny generated world (or a small official-format file) and checks both policies:
``fail`` raises naming the file, the record and the field; ``skip`` leaves the record out and counts it exactly.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from vict.data.coco import load_coco_captions
from vict.data.dataset import load_world_split
from vict.data.gqa import load_gqa_questions
from vict.data.images import DEFAULT_MAX_PIXELS, check_images, load_image
from vict.data.policy import (
    BadImageError,
    BadInputPolicy,
    DataError,
    EmptyFieldError,
    FileShapeError,
    MissingFieldError,
    WrongTypeError,
)
from vict.data.prompts import KINDS, ExampleStream, InstructionBuilder
from vict.data.scienceqa import load_scienceqa
from vict.data.vg import load_vg_coco_ids
from vict.data.world import generate_world

SRC = Path(__file__).resolve().parents[3] / "src" / "vict"


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_world")
    generate_world(out, images=8, seed=0)
    return out


@pytest.fixture
def world(tiny_world: Path, tmp_path: Path) -> Path:
    """A fresh copy of the 8-image world (6 train images), free to corrupt."""
    return Path(shutil.copytree(tiny_world, tmp_path / "world"))


def _edit(path: Path, change: Callable[[object], object]) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(data)), encoding="utf-8")
    return path


def _captions(world: Path) -> Path:
    return world / "annotations" / "captions_train.json"


def _questions(world: Path) -> Path:
    return world / "annotations" / "train_balanced_questions.json"


def _set_question(index: int, **fields: object) -> Callable[[dict], dict]:
    def change(data: dict) -> dict:
        data[list(data)[index]].update(fields)
        return data

    return change


def _located(error: DataError, file: Path, record: str, field: str | None) -> None:
    """The message and the attributes name the file, the record and the field, and say how to go on."""
    message = str(error)
    assert str(file) in message and record in message and error.file == str(file) and error.record == record
    if field is not None:
        assert f"field {field!r}" in message and error.field == field
    assert "data.bad_input=skip" in message and "--skip-bad" in message


# ---------------------------------------------------------------- case 1: an empty question


def test_empty_question_is_skipped_and_counted_and_never_reaches_the_builder(world: Path) -> None:
    path = _edit(_questions(world), _set_question(0, question="  "))
    qid = next(iter(json.loads(path.read_text())))
    with pytest.raises(EmptyFieldError) as e:
        load_world_split(world, "train")
    _located(e.value, path, f"question {qid!r}", "question")

    policy = BadInputPolicy("skip")
    records = load_world_split(world, "train", policy=policy)
    assert policy.report.counts == {"empty_field": 1}
    assert all(qa.question.strip() for r in records for qa in r.qas)
    assert qid not in {qa.question_id for r in records for qa in r.qas}
    # Before the fix, the 'qa_cap' / 'qa_qa' builder raised "a 'qa_cap' prompt needs ['question']" within the
    # first few dozen examples; every kind now builds from every record, for many epochs.
    stream = ExampleStream(records, InstructionBuilder(seed=0), seed=0)
    built = [stream[i] for i in range(20 * len(stream))]
    assert {ex.kind for ex in built} == set(KINDS)


def test_builder_ignores_a_blank_question_built_in_python(world: Path) -> None:
    records = load_world_split(world, "train")
    for qa in records[0].qas:
        qa.question = ""
    builder = InstructionBuilder(seed=0)
    assert builder.qas_for(records[0], "short") == [] and not builder.can_build(records[0], "qa")


# ---------------------------------------------------------------- case 2: wrongly typed annotations


def test_null_and_number_captions_fail_with_file_record_field(world: Path) -> None:
    def corrupt(data: dict) -> dict:
        data["annotations"][0]["caption"] = None
        data["annotations"][1]["caption"] = 12345
        return data

    path = _edit(_captions(world), corrupt)
    ann = json.loads(path.read_text())["annotations"][0]
    with pytest.raises(WrongTypeError) as e:
        load_world_split(world, "train")
    record = f"annotations[0] (id {ann['id']}, image_id {ann['image_id']})"
    _located(e.value, path, record, "caption")
    assert "is null; expected a non-empty string" in str(e.value)

    policy = BadInputPolicy("skip")
    records = load_world_split(world, "train", policy=policy)
    assert policy.report.counts == {"wrong_type": 2}
    captions = [c for r in records for c in r.captions]
    assert len(captions) == 6 * 5 - 2 and "None" not in captions and "12345" not in captions
    assert "12345 (a number)" in policy.report.summary()


def test_question_number_and_null_answer(world: Path) -> None:
    path = _edit(_questions(world), lambda d: _set_question(1, answer=None)(_set_question(0, question=123)(d)))
    qids = list(json.loads(path.read_text()))
    with pytest.raises(WrongTypeError) as e:
        load_world_split(world, "train")
    _located(e.value, path, f"question {qids[0]!r}", "question")
    assert "123 (a number)" in str(e.value)

    policy = BadInputPolicy("skip")
    records = load_world_split(world, "train", policy=policy)
    assert policy.report.counts == {"wrong_type": 2}
    kept = {qa.question_id: qa for r in records for qa in r.qas}
    assert qids[0] not in kept and qids[1] not in kept and len(kept) == len(qids) - 2
    assert all(isinstance(qa.question, str) and isinstance(qa.answer, str) for qa in kept.values())
    # Answer-less test files: a null answer is "withheld", not bad.
    _edit(path, _set_question(0, question="Is it red?"))
    withheld = load_gqa_questions(path, require_answer=False)
    assert {qa.question_id: qa.answer for r in withheld for qa in r.qas}[qids[1]] is None


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"imageId": None}, "imageId", "wrong_type"),
        ({"imageId": ["1"]}, "imageId", "wrong_type"),
        ({"answer": ""}, "answer", "empty_field"),
        ({"answer": 7}, "answer", "wrong_type"),
        ({"fullAnswer": 3.5}, "fullAnswer", "wrong_type"),
        ({"isBalanced": "false"}, "isBalanced", "wrong_type"),
        ({"types": ["query"]}, "types", "wrong_type"),
        ({"types": {"structural": 1}}, "types.structural", "wrong_type"),
    ],
)
def test_every_gqa_field_is_typed(world: Path, fields: dict, field: str, reason: str) -> None:
    path = _edit(_questions(world), _set_question(2, **fields))
    qid = list(json.loads(path.read_text()))[2]
    with pytest.raises(DataError) as e:
        load_gqa_questions(path)
    assert e.value.reason == reason
    _located(e.value, path, f"question {qid!r}", field)
    policy = BadInputPolicy("skip")
    assert sum(len(r.qas) for r in load_gqa_questions(path, policy=policy)) == 6 * 6 - 1
    assert policy.report.counts == {reason: 1}


def test_integer_image_id_is_accepted_as_the_format_allows(world: Path) -> None:
    path = _edit(_questions(world), _set_question(0, imageId=1))
    assert load_gqa_questions(path)[0].image_id == "1"


def test_captions_file_whose_top_level_is_a_list(world: Path) -> None:
    path = _captions(world)
    path.write_text("[1, 2, 3]", encoding="utf-8")
    for mode in ("fail", "skip"):  # the wrong file, not a bad record: raised under both policies
        with pytest.raises(FileShapeError) as e:
            load_world_split(world, "train", policy=mode)
        message = str(e.value)
        assert str(path) in message and "top level is an array of number, not of objects" in message
        assert "expected COCO captions_*.json" in message


def test_questions_file_of_the_wrong_shape(world: Path) -> None:
    path = _questions(world)
    path.write_text('"questions"', encoding="utf-8")
    with pytest.raises(FileShapeError, match="not a GQA questions file"):
        load_gqa_questions(path, policy="skip")
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(WrongTypeError, match=r"item \[0\] is 1 \(a number\); expected an object"):
        load_gqa_questions(path)
    policy = BadInputPolicy("skip")
    with pytest.raises(FileShapeError, match=r"its 2 items are number, not objects"):
        load_gqa_questions(path, policy=policy)


def _official(tmp_path: Path, images: object, annotations: object) -> Path:
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}), encoding="utf-8")
    return path


def test_coco_ids_types_and_references(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "1.jpg"},
        {"id": "2", "file_name": "2.jpg"},  # a string id
        {"id": 3, "file_name": 3},  # a number file name
        {"id": 4, "file_name": "4.jpg"},
    ]
    annotations = [
        {"image_id": 1, "id": 10, "caption": "A red circle."},
        {"image_id": 2, "id": 11, "caption": "of a bad image entry"},
        {"image_id": 3, "id": 12, "caption": "of another bad image entry"},
        {"image_id": 9, "id": 13, "caption": "of no listed image"},
        {"image_id": True, "id": 14, "caption": "a boolean id"},
        "not an object",
        {"image_id": 4, "id": 15, "caption": ""},
        {"image_id": 4, "id": 16, "caption": "A blue square."},
    ]
    path = _official(tmp_path, images, annotations)
    with pytest.raises(WrongTypeError) as e:
        load_coco_captions(path)
    _located(e.value, path, "images[1]", "id")
    policy = BadInputPolicy("skip")
    records = load_coco_captions(path, tmp_path, policy=policy)
    assert {r.image_id: r.captions for r in records} == {"1": ["A red circle."], "4": ["A blue square."]}
    assert policy.report.counts == {"wrong_type": 4, "image_skipped": 2, "unknown_image": 1, "empty_field": 1}
    summary = policy.report.summary()
    assert "annotations[3] (id 13, image_id 9): field 'image_id' is 9, which no entry of 'images' has" in summary
    assert "its image 2 was skipped" in summary
    # Without an images folder a file_name is optional (LAVIS *_gt.json files have none) but still typed.
    gt = _official(tmp_path, [{"id": 1}], [{"image_id": 1, "caption": "ok"}])
    assert load_coco_captions(gt)[0].captions == ["ok"]
    with pytest.raises(MissingFieldError, match=r"images\[0\] \(id 1\): field 'file_name' is missing"):
        load_coco_captions(gt, tmp_path)
    no_images = tmp_path / "no_images.json"
    no_images.write_text(json.dumps({"annotations": []}))
    with pytest.raises(FileShapeError, match="'images' is missing"):
        load_coco_captions(no_images, policy="skip")


def test_karpathy_and_lavis_formats_are_typed(tmp_path: Path) -> None:
    karpathy = tmp_path / "dataset_coco.json"
    karpathy.write_text(
        json.dumps(
            {
                "images": [
                    {"cocoid": 1, "filename": "a.jpg", "split": "test", "sentences": [{"raw": "ok"}, {"raw": None}]},
                    {"cocoid": "2", "filename": "b.jpg", "split": "test", "sentences": [{"raw": "x"}]},
                ]
            }
        )
    )
    with pytest.raises(WrongTypeError) as e:
        load_coco_captions(karpathy)
    _located(e.value, karpathy, "images[0] (cocoid 1) sentences[1]", "raw")
    policy = BadInputPolicy("skip")
    assert {r.image_id: r.captions for r in load_coco_captions(karpathy, policy=policy)} == {"1": ["ok"]}
    assert policy.report.counts == {"wrong_type": 2}

    lavis = tmp_path / "coco_karpathy_train.json"
    lavis.write_text(
        json.dumps(
            [
                {"image": "val2014/COCO_val2014_000000000042.jpg", "caption": "ok", "image_id": "coco_42"},
                {"image": "val2014/COCO_val2014_000000000042.jpg", "caption": 12345, "image_id": "coco_42"},
                {"image": "val2014/COCO_val2014_000000000073.jpg", "caption": ["fine", None]},
                {"image": None, "caption": "no image"},
                7,
            ]
        )
    )
    policy = BadInputPolicy("skip")
    assert {r.image_id: r.captions for r in load_coco_captions(lavis, policy=policy)} == {"42": ["ok"]}
    assert policy.report.counts == {"wrong_type": 4}
    with pytest.raises(WrongTypeError, match=r"item \[1\] \(image 'val2014/COCO_val2014_000000000042.jpg'\)"):
        load_coco_captions(lavis)


def test_vg_image_data_is_typed(tmp_path: Path) -> None:
    path = tmp_path / "image_data.json"
    path.write_text(json.dumps([{"image_id": 1, "coco_id": 42}, {"image_id": 2, "coco_id": "abc"}, {"coco_id": 3}]))
    with pytest.raises(WrongTypeError) as e:
        load_vg_coco_ids(path)
    _located(e.value, path, "item [1] (image_id 2)", "coco_id")
    policy = BadInputPolicy("skip")
    assert load_vg_coco_ids(path, policy=policy) == {"1": "42"}
    assert policy.report.counts == {"wrong_type": 1, "missing_field": 1}
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(FileShapeError, match=r"not a Visual Genome image_data\.json"):
        load_vg_coco_ids(path, policy="skip")


def test_scienceqa_skip_policy_counts_invalid_problems(tiny_world: Path, tmp_path: Path) -> None:
    sqa = Path(shutil.copytree(tiny_world / "scienceqa", tmp_path / "scienceqa"))
    problems = json.loads((sqa / "problems.json").read_text())
    train = json.loads((sqa / "pid_splits.json").read_text())["train"]
    problems[str(train[0])]["question"] = ""
    problems[str(train[1])]["choices"] = None
    (sqa / "problems.json").write_text(json.dumps(problems))
    with pytest.raises(DataError, match=r"2 problems of \d+ are invalid"):
        load_scienceqa(sqa / "problems.json", split="train")
    policy = BadInputPolicy("skip")
    loaded = load_scienceqa(sqa / "problems.json", split="train", policy=policy)
    assert len(loaded) == len(train) - 2 and policy.report.counts == {"invalid_problem": 2}


# ---------------------------------------------------------------- images: truncated, bombs, missing


def test_check_images_decodes_every_file_and_names_each_bad_one(tiny_world: Path, tmp_path: Path, monkeypatch):
    good = tiny_world / "images" / "1.png"
    truncated = tmp_path / "truncated.png"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (6000, 6000)).save(bomb)  # 36 Mpx: fine by default, a bomb under a 30 Mpx limit
    items = [("image 1", good), ("image 2", truncated), ("image 3", bomb), ("image 4", tmp_path / "gone.png")]
    assert [(e.record, e.reason) for e in check_images(items)] == [
        ("image 2", "truncated_image"),
        ("image 4", "missing_image"),
    ]
    monkeypatch.setenv("VICT_MAX_IMAGE_PIXELS", "30000000")
    found = check_images(items, workers=1)
    assert [(e.record, e.reason) for e in found] == [
        ("image 2", "truncated_image"),
        ("image 3", "image_too_large"),
        ("image 4", "missing_image"),
    ]
    assert str(bomb) in str(found[1]) and "6000x6000 = 36,000,000" in str(found[1])
    monkeypatch.setenv("VICT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="VICT_MAX_IMAGE_PIXELS='lots'"):
        load_image(good)


# ---------------------------------------------------------------- case 3: messages point to keys and flags that exist


def test_bomb_message_names_a_limit_that_exists(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)
    assert DEFAULT_MAX_PIXELS < 10_000 * 10_000
    with pytest.raises(BadImageError) as e:
        load_image(bomb, record="image 7")
    message = str(e.value)
    assert e.value.reason == "image_too_large" and "max_image_pixels" not in message.replace("VICT_MAX_IMAGE", "")
    assert "VICT_MAX_IMAGE_PIXELS=N" in message and "data.bad_input=skip" in message and "--skip-bad" in message


def _message_texts() -> list[tuple[str, str]]:
    """Every string literal (f-string parts included) of the data package and the evaluation data path."""
    files = sorted((SRC / "data").rglob("*.py"))
    files += [SRC / "eval" / "splits.py", SRC / "recipes" / "evaluate.py", SRC / "recipes" / "evaluate_cli.py"]
    out = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((path.name, node.value))
    return out


def test_every_config_key_and_flag_named_in_messages_exists() -> None:
    import argparse
    import importlib

    from vict import config

    sections = {f.name: f.type for f in dataclasses.fields(config.VictConfig)}
    known_keys = {
        f"{section}.{f.name}"
        for section in ("data", "train", "model")
        for f in dataclasses.fields(getattr(config, f"{section.capitalize()}Config"))
    }
    assert {"data", "train", "model"} <= set(sections)

    def options(parser: argparse.ArgumentParser) -> set[str]:
        found = set()
        for action in parser._actions:
            found |= set(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= options(sub)
        return found

    known_flags: set[str] = set()
    for module in ("vict.data.cli", "vict.recipes.evaluate_cli", "vict.recipes.train_cli", "vict.eval.cli"):
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        known_flags |= options(parser)

    bad = []
    for name, text in _message_texts():
        for key in re.findall(r"(?<![\w.])((?:data|train|model)\.[a-z_]+)", text):
            if key not in known_keys:
                bad.append(f"{name}: config key {key}")
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w*-])", text):
            if flag not in known_flags:
                bad.append(f"{name}: flag {flag}")
    assert not bad, bad
