"""`load_eval_files`: real COCO captions (three formats), GQA questions and the VG join, into an EvalSplit."""

from __future__ import annotations

from pathlib import Path

import pytest
from real_files import CAPTIONS, write_real_files

from vict.eval.splits import load_eval_files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_real_files(tmp_path_factory.mktemp("real"))


def test_three_caption_formats_give_the_same_split(files: dict[str, Path]) -> None:
    official = load_eval_files(files["captions"], images_dir=files["coco_images"], tasks=["caption"])
    karpathy = load_eval_files(
        files["karpathy"], images_dir=files["coco_root"], karpathy_split="test", tasks=["caption"]
    )
    lavis = load_eval_files(files["lavis"], images_dir=files["coco_root"], tasks=["caption"])
    for split in (official, karpathy, lavis):
        assert [im.image_id for im in split.images] == [42, 73]  # ints, as COCO results files need
        assert [im.gold_caption for im in split.images] == [CAPTIONS[42][0], CAPTIONS[73][0]]
        assert [im.path.name for im in split.images] == [
            "COCO_val2014_000000000042.jpg",
            "COCO_val2014_000000000073.jpg",
        ]
        anns = sorted((a["image_id"], a["caption"]) for a in split.captions["annotations"])
        assert anns == sorted((i, c) for i, caps in CAPTIONS.items() for c in caps)
        assert split.questions == [] and split.gqa is None


def test_gqa_joined_to_coco_through_vg(files: dict[str, Path]) -> None:
    split = load_eval_files(
        files["captions"],
        files["val_questions"],
        files["coco_images"],
        question_images_dir=files["gqa_images"],
        vg_image_data=files["vg"],
    )
    # COCO 42 = VG 2354786 (captions and questions, COCO's image file), COCO 73 (captions only),
    # VG 2354787 (no COCO id: questions only, GQA's image file, no gold caption).
    assert [im.image_id for im in split.images] == [42, 73, "vg:2354787"]
    assert [im.captioned for im in split.images] == [True, True, False]
    assert split.images[2].gold_caption is None and split.images[2].path.name == "2354787.jpg"
    assert split.images[0].path.name == "COCO_val2014_000000000042.jpg"
    # Only balanced questions are evaluated (203 is not), each pointing at its image.
    assert [(q.question_id, q.image_index) for q in split.questions] == [("201", 0), ("202", 0), ("204", 2)]
    assert split.gqa["201"]["answer"] == "red" and split.gqa["201"]["types"]["semantic"] == "attr"
    assert split.questions[0].full_answer == "The circle is red."
    assert [im["id"] for im in split.captions["images"]] == [42, 73]
    assert "captions and questions: 1" in split.notes[0]


def test_gqa_testdev_alone_has_no_gold_captions(files: dict[str, Path]) -> None:
    split = load_eval_files(questions=files["testdev_questions"], images_dir=files["gqa_images"], tasks=["gqa"])
    assert [im.image_id for im in split.images] == ["n161313"]
    assert not split.images[0].captioned and split.images[0].gold_caption is None
    assert [q.question_id for q in split.questions] == ["t1", "t2"] and split.captions is None


def test_limit_keeps_the_first_images_and_their_questions(files: dict[str, Path]) -> None:
    split = load_eval_files(
        files["captions"], files["val_questions"], files["coco_images"],
        question_images_dir=files["gqa_images"], vg_image_data=files["vg"], limit=1,
    )  # fmt: skip
    assert [im.image_id for im in split.images] == [42] and [q.question_id for q in split.questions] == ["201", "202"]


def test_bad_input_names_the_problem(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"the caption task needs --captions FILE"):
        load_eval_files(questions=files["val_questions"], images_dir=files["gqa_images"])
    with pytest.raises(ValueError, match=r"--images DIR is needed"):
        load_eval_files(files["captions"], tasks=["caption"])
    with pytest.raises(ValueError, match=r"--images .*nowhere: not a folder"):
        load_eval_files(files["captions"], images_dir=tmp_path / "nowhere", tasks=["caption"])
    # Images folder that does not hold the files: every missing image counted, the first ones named.
    with pytest.raises(FileNotFoundError, match=r"2 images not found .*COCO_val2014_000000000042.jpg"):
        load_eval_files(files["captions"], images_dir=tmp_path, tasks=["caption"])
