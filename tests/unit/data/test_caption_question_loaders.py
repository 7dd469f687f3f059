"""COCO (official / Karpathy / LAVIS), GQA (official / LAVIS) and VG loaders on fixtures written from the schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vict.data.coco import load_coco_captions
from vict.data.dataset import load_dataset, load_records
from vict.data.gqa import load_gqa_questions
from vict.data.policy import BadInputPolicy, MalformedJSONError, MissingFieldError
from vict.data.vg import load_vg_coco_ids

# image id -> (Karpathy split, source folder, captions)
CAPTIONS = {
    391895: (
        "test",
        "val2014",
        ["A man with a red helmet on a small moped on a dirt road. ", "Man riding a motor bike."],
    ),
    57870: ("train", "train2014", ["A restaurant with chairs.", "A table in a dining room."]),
    203564: ("restval", "val2014", ["A bicycle replica with a clock as the front wheel."]),
}


def _name(image_id: int, folder: str) -> str:
    return f"COCO_{folder}_{image_id:012d}.jpg"


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def caption_files(tmp_path: Path) -> dict[str, Path]:
    official = {
        "info": {},
        "licenses": [],
        "images": [
            {"id": i, "file_name": _name(i, f), "height": 480, "width": 640} for i, (_, f, _) in CAPTIONS.items()
        ],
        "annotations": [
            {"image_id": i, "id": 100 * i + k, "caption": c}
            for i, (_, _, caps) in CAPTIONS.items()
            for k, c in enumerate(caps)
        ],
    }
    karpathy = {
        "dataset": "coco",
        "images": [
            {
                "filepath": f,
                "filename": _name(i, f),
                "imgid": n,
                "split": split,
                "sentids": list(range(len(caps))),
                "sentences": [
                    {"tokens": c.lower().split(), "raw": c, "imgid": n, "sentid": k} for k, c in enumerate(caps)
                ],
                "cocoid": i,
            }
            for n, (i, (split, f, caps)) in enumerate(CAPTIONS.items())
        ],
    }
    lavis_train = [
        {"caption": c, "image": f"{f}/{_name(i, f)}", "image_id": f"coco_{i}"}
        for i, (_, f, caps) in CAPTIONS.items()
        for c in caps
    ]
    lavis_eval = [{"image": f"{f}/{_name(i, f)}", "caption": caps} for i, (_, f, caps) in CAPTIONS.items()]
    return {
        "official": _write(tmp_path / "captions_val2014.json", official),
        "karpathy": _write(tmp_path / "dataset_coco.json", karpathy),
        "lavis_train": _write(tmp_path / "coco_karpathy_train.json", lavis_train),
        "lavis_eval": _write(tmp_path / "coco_karpathy_val.json", lavis_eval),
    }


def _by_id(records) -> dict[str, list[str]]:
    return {r.image_id: r.captions for r in records}


def test_caption_formats_agree(caption_files: dict[str, Path]) -> None:
    expected = {str(i): [c.strip() for c in caps] for i, (_, _, caps) in CAPTIONS.items()}
    for fmt, path in caption_files.items():
        assert _by_id(load_coco_captions(path)) == expected, fmt


def test_caption_image_paths(caption_files: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "coco"
    official = {r.image_id: r.image_path for r in load_coco_captions(caption_files["official"], root / "val2014")}
    assert official["391895"] == root / "val2014" / "COCO_val2014_000000391895.jpg"
    karpathy = {r.image_id: r.image_path for r in load_coco_captions(caption_files["karpathy"], root)}
    assert karpathy["57870"] == root / "train2014" / "COCO_train2014_000000057870.jpg"
    lavis = {r.image_id: r.image_path for r in load_coco_captions(caption_files["lavis_eval"], root)}
    assert lavis["391895"] == root / "val2014" / "COCO_val2014_000000391895.jpg"
    assert all(r.image_path is None for r in load_coco_captions(caption_files["official"]))


def test_karpathy_splits_put_restval_in_train(caption_files: dict[str, Path]) -> None:
    train = load_coco_captions(caption_files["karpathy"], split="train")
    assert sorted(r.image_id for r in train) == ["203564", "57870"]
    assert [r.image_id for r in load_coco_captions(caption_files["karpathy"], split="test")] == ["391895"]
    assert load_coco_captions(caption_files["karpathy"], split="val") == []
    with pytest.raises(ValueError, match="only applies to Karpathy"):
        load_coco_captions(caption_files["official"], split="train")


def test_unknown_caption_file_shape_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unrecognised caption file"):
        load_coco_captions(_write(tmp_path / "x.json", {"foo": 1}))


def test_caption_missing_field_fail_and_skip(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 1, "file_name": "1.jpg"}],
        "annotations": [{"image_id": 1, "id": 5}, {"image_id": 1, "id": 6, "caption": "ok"}],
    }
    path = _write(tmp_path / "c.json", data)
    with pytest.raises(MissingFieldError, match=r"annotations\[0\].*caption"):
        load_coco_captions(path)
    policy = BadInputPolicy("skip")
    records = load_coco_captions(path, policy=policy)
    assert records[0].captions == ["ok"]
    assert policy.report.counts == {"missing_field": 1}


# ------------------------------------------------------------------ GQA

QUESTIONS = {
    "00126851": {
        "imageId": "10",
        "question": "Are there carts near the pond?",
        "answer": "yes",
        "fullAnswer": "Yes, there is a cart near the pond.",
        "isBalanced": True,
        "types": {"structural": "verify", "semantic": "rel", "detailed": "existRelS"},
    },
    "201307251": {
        "imageId": "10",
        "question": "Is it overcast?",
        "answer": "no",
        "fullAnswer": "No, it is clear.",
        "isBalanced": False,
        "types": {"structural": "verify", "semantic": "global", "detailed": "weather"},
    },
    "5": {
        "imageId": "11",
        "question": "What is this bird called?",
        "answer": "parrot",
        "fullAnswer": "The bird is a parrot.",
        "isBalanced": True,
        "types": {"structural": "query", "semantic": "cat", "detailed": "categoryThis"},
    },
    "6": {
        "imageId": "12",
        "question": "What color is the car?",
        "answer": "red",
        "fullAnswer": "The car is red.",
        "isBalanced": True,
        "types": {"structural": "query", "semantic": "attr", "detailed": "colorObj"},
    },
}


@pytest.fixture
def gqa_file(tmp_path: Path) -> Path:
    # Indented, as the official files are not; the streaming reader must not care.
    path = tmp_path / "train_balanced_questions.json"
    path.write_text(json.dumps(QUESTIONS, indent=2), encoding="utf-8")
    return path


def test_gqa_official_file(gqa_file: Path, tmp_path: Path) -> None:
    records = load_gqa_questions(gqa_file, tmp_path / "images")
    assert [r.image_id for r in records] == ["10", "11", "12"]
    assert records[0].image_path == tmp_path / "images" / "10.jpg"
    qa = records[0].qas[0]
    assert (qa.question_id, qa.answer, qa.full_answer, qa.structural, qa.semantic, qa.detailed, qa.is_balanced) == (
        "00126851",
        "yes",
        "Yes, there is a cart near the pond.",
        "verify",
        "rel",
        "existRelS",
        True,
    )
    assert records[0].qas[1].is_balanced is False
    balanced = load_gqa_questions(gqa_file, balanced_only=True)
    assert [qa.question_id for r in balanced for qa in r.qas] == ["00126851", "5", "6"]


def test_gqa_lavis_list_agrees_with_official(gqa_file: Path, tmp_path: Path) -> None:
    lavis = [
        {"image": f"{q['imageId']}.jpg", "question": q["question"], "question_id": qid, "answer": q["answer"]}
        for qid, q in QUESTIONS.items()
    ]
    lavis_path = _write(tmp_path / "lavis_gqa.json", lavis)
    a = {qa.question_id: (r.image_id, qa.question, qa.answer) for r in load_gqa_questions(gqa_file) for qa in r.qas}
    b = {qa.question_id: (r.image_id, qa.question, qa.answer) for r in load_gqa_questions(lavis_path) for qa in r.qas}
    assert a == b


def test_gqa_missing_answer_fail_skip_and_test_files(tmp_path: Path) -> None:
    data = {k: dict(v) for k, v in QUESTIONS.items()}
    del data["5"]["answer"]
    path = _write(tmp_path / "q.json", data)
    with pytest.raises(MissingFieldError) as e:
        load_gqa_questions(path)
    assert str(path) in str(e.value) and "'5'" in str(e.value) and "answer" in str(e.value)
    assert "require_answer=False" in str(e.value)
    policy = BadInputPolicy("skip")
    records = load_gqa_questions(path, policy=policy)
    assert sorted(qa.question_id for r in records for qa in r.qas) == ["00126851", "201307251", "6"]
    assert policy.report.counts == {"missing_field": 1}
    assert "'5'" in policy.report.summary()
    test_records = load_gqa_questions(path, require_answer=False)
    assert {qa.question_id: qa.answer for r in test_records for qa in r.qas}["5"] is None


def test_gqa_malformed_json_reports_position_and_skip_keeps_earlier_questions(gqa_file: Path, tmp_path: Path) -> None:
    text = gqa_file.read_text()
    cut = text.index('"5"')
    bad = tmp_path / "bad.json"
    bad.write_text(text[:cut] + '"5" {' + text[cut + 4 :], encoding="utf-8")
    line = text[:cut].count("\n") + 1
    with pytest.raises(MalformedJSONError) as e:
        load_gqa_questions(bad)
    assert f"{bad}:{line}:" in str(e.value)
    policy = BadInputPolicy("skip")
    records = load_gqa_questions(bad, policy=policy)
    assert [qa.question_id for r in records for qa in r.qas] == ["00126851", "201307251"]
    assert policy.report.counts == {"malformed_json": 1}


# ------------------------------------------------------------------ VG join


def test_vg_join_counts(caption_files: dict[str, Path], gqa_file: Path, tmp_path: Path) -> None:
    vg = _write(
        tmp_path / "image_data.json",
        [
            {"image_id": 10, "coco_id": 391895, "flickr_id": None, "url": "u", "width": 800, "height": 600},
            {"image_id": 11, "coco_id": None, "flickr_id": 3, "url": "u", "width": 800, "height": 600},
            {"image_id": 12, "coco_id": -1, "flickr_id": None, "url": "u", "width": 800, "height": 600},
        ],
    )
    assert load_vg_coco_ids(vg) == {"10": "391895"}
    loaded = load_dataset(caption_files["official"], gqa_file, vg_image_data=vg)
    j = loaded.join
    assert (j.both, j.captions_only, j.questions_only, j.questions_unmapped, j.kept) == (1, 2, 2, 2, 5)
    joined = {r.image_id: r for r in loaded.records}
    assert len(joined["391895"].captions) == 2 and len(joined["391895"].qas) == 2
    assert "vg:11" in joined and joined["vg:11"].captions == []
    both = load_records(caption_files["official"], gqa_file, vg_image_data=vg, keep="both")
    assert [r.image_id for r in both] == ["391895"]
    assert "captions and questions: 1" in j.summary()


def test_world_shortcut_matches_load_world_split(world_dir: Path, world_train) -> None:
    records = load_records(world=world_dir, split="train")
    assert [r.image_id for r in records] == [r.image_id for r in world_train]
    assert all(len(r.captions) == 5 and r.qas and r.image_path.is_file() for r in records)
    with pytest.raises(ValueError, match="splits"):
        load_records(world=world_dir, split="dev")
    with pytest.raises(FileNotFoundError, match="vict data world"):
        load_records(world=world_dir / "nope", split="train")
