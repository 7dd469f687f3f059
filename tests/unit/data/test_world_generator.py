"""The miniature world: deterministic bytes, official formats, answers true to the scene, balanced questions."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from vict.data.dataset import load_world_split
from vict.data.world import DENSE_CAPTION_INDEX, generate_world, split_sizes

SPLITS = ("train", "val", "test")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    a = _tree_digest(Path(generate_world(tmp_path / "a", images=30, seed=7) and tmp_path / "a"))
    b = _tree_digest(Path(generate_world(tmp_path / "b", images=30, seed=7) and tmp_path / "b"))
    assert a == b
    assert len([k for k in a if k.startswith("images/")]) == 30
    c = _tree_digest(Path(generate_world(tmp_path / "c", images=30, seed=8) and tmp_path / "c"))
    assert a["images/1.png"] != c["images/1.png"], "a different seed must give different images"


def test_images_do_not_depend_on_world_size(tmp_path: Path) -> None:
    generate_world(tmp_path / "small", images=5, seed=3)
    generate_world(tmp_path / "big", images=12, seed=3)
    for i in range(1, 6):
        assert (tmp_path / "small/images" / f"{i}.png").read_bytes() == (
            tmp_path / "big/images" / f"{i}.png"
        ).read_bytes()


def test_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    generate_world(tmp_path, images=3, seed=0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_world(tmp_path, images=3, seed=0)
    generate_world(tmp_path, images=4, seed=0, overwrite=True)
    assert len(list((tmp_path / "images").glob("*.png"))) == 4


def test_rejects_bad_arguments_all_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        generate_world(tmp_path, images=0, size=8, questions_per_image=0)
    assert "images=0" in str(e.value) and "size=8" in str(e.value) and "questions_per_image=0" in str(e.value)


def test_splits_are_80_10_10_and_images_are_rgb(world_dir: Path) -> None:
    assert split_sizes(60) == {"train": 48, "val": 6, "test": 6}
    assert split_sizes(1000) == {"train": 800, "val": 100, "test": 100}
    summary = json.loads((world_dir / "summary.json").read_text())
    assert {s: summary["splits"][s]["images"] for s in SPLITS} == {"train": 48, "val": 6, "test": 6}
    img = Image.open(world_dir / "images" / "1.png")
    assert img.mode == "RGB" and img.size == (64, 64)


def test_pycocotools_loads_caption_files_and_ids_are_shared_with_gqa(world_dir: Path) -> None:
    seen: set[int] = set()
    for split in SPLITS:
        coco = COCO(str(world_dir / "annotations" / f"captions_{split}.json"))
        ids = set(coco.getImgIds())
        assert not ids & seen, "an image id appears in two splits"
        seen |= ids
        for image_id in ids:
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert len(anns) == 5
            assert len({a["caption"] for a in anns}) == 5, "the five captions must differ"
            assert [a["dense"] for a in anns].count(True) == 1
            assert (world_dir / "images" / coco.imgs[image_id]["file_name"]).is_file()
        questions = json.loads((world_dir / "annotations" / f"{split}_balanced_questions.json").read_text())
        q_images = {int(q["imageId"]) for q in questions.values()}
        assert all(isinstance(q["imageId"], str) for q in questions.values())
        assert q_images == ids, "every image has questions, and questions only refer to that split's images"
    assert seen == set(range(1, 61))


# ------------------------------------------------------------------ an independent interpreter of the programs


def _parse_select(arg: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in arg.split(",")) if arg else {}


def _obj_matches(o: dict, spec: dict[str, str]) -> bool:
    return all(o[k] == v for k, v in spec.items())


def _rel(rel: str, a: dict, b: dict) -> bool:
    return {
        "left": a["col"] < b["col"],
        "right": a["col"] > b["col"],
        "above": a["row"] < b["row"],
        "below": a["row"] > b["row"],
    }[rel]


def _execute(program: list[dict], objects: list[dict]):
    results: list = []
    for op in program:
        name, arg, deps = op["operation"], op["argument"], [results[d] for d in op["dependencies"]]
        if name == "select":
            results.append([o for o in objects if _obj_matches(o, _parse_select(arg))])
        elif name == "query":
            assert len(deps[0]) == 1, f"query on {len(deps[0])} objects: the reference is ambiguous"
            results.append(deps[0][0][arg])
        elif name == "exist":
            results.append("yes" if deps[0] else "no")
        elif name == "count":
            results.append(str(len(deps[0])))
        elif name == "relate":
            assert len(deps[0]) == 1
            results.append([o for o in objects if o is not deps[0][0] and _rel(arg, o, deps[0][0])])
        elif name == "verify_rel":
            assert len(deps[0]) == 1 and len(deps[1]) == 1
            results.append("yes" if _rel(arg, deps[0][0], deps[1][0]) else "no")
        elif name == "same":
            assert len(deps[0]) == 1 and len(deps[1]) == 1 and deps[0][0] is not deps[1][0]
            results.append("yes" if deps[0][0][arg] == deps[1][0][arg] else "no")
        elif name == "choose":
            assert len(deps[0]) == 1
            attr, options = arg.split(":")
            value = deps[0][0][attr]
            assert value in options.split("|")
            results.append(value)
        elif name == "and":
            results.append("yes" if all(d == "yes" for d in deps) else "no")
        else:
            raise AssertionError(f"unknown operation {name}")
    return results[-1]


def _load_world(world_dir: Path):
    scenes = {s["image_id"]: s for s in json.loads((world_dir / "annotations/scenes.json").read_text())["scenes"]}
    questions = {}
    for split in SPLITS:
        questions.update(json.loads((world_dir / "annotations" / f"{split}_balanced_questions.json").read_text()))
    return scenes, questions


def test_every_answer_is_true_for_the_scene(world_dir: Path) -> None:
    scenes, questions = _load_world(world_dir)
    assert len(questions) >= 6 * 55
    for qid, q in questions.items():
        objects = scenes[int(q["imageId"])]["objects"]
        assert _execute(q["semantic"], objects) == q["answer"], (qid, q["question"], q["semanticStr"])
        if q["answer"] in ("yes", "no"):
            assert q["fullAnswer"].lower().startswith(q["answer"]), (qid, q["fullAnswer"])
        # Every attribute value the program selects on is spelled in the question.
        for op in q["semantic"]:
            if op["operation"] == "select":
                for key, value in _parse_select(op["argument"]).items():
                    assert value in q["question"], (qid, q["question"], key, value)


def test_question_types_cover_the_gqa_vocabularies(world_dir: Path) -> None:
    _, questions = _load_world(world_dir)
    structural = {q["types"]["structural"] for q in questions.values()}
    semantic = {q["types"]["semantic"] for q in questions.values()}
    assert structural == {"verify", "query", "choose", "compare", "logical"}
    assert semantic == {"attr", "obj", "rel", "cat", "global"}
    assert all(q["isBalanced"] is True for q in questions.values())
    assert len(set(questions)) == len(questions)


def test_captions_dense_first_and_true_to_the_scene(world_dir: Path) -> None:
    scenes, _ = _load_world(world_dir)
    records = load_world_split(world_dir, "val")
    assert len(records) == 6
    for rec in records:
        objects = scenes[int(rec.image_id)]["objects"]
        dense = rec.captions[DENSE_CAPTION_INDEX].lower()
        for o in objects:
            assert f"{o['size']} {o['color']} {o['shape']}" in dense
        # Each other caption mentions only colours and shapes that are in the scene.
        present = {o["color"] for o in objects} | {o["shape"] for o in objects}
        vocab = {"red", "green", "blue", "yellow", "purple", "orange", "circle", "square", "triangle", "diamond"}
        for cap in rec.captions[1:]:
            words = {w.strip(".,:").rstrip("s") for w in cap.lower().split()}
            assert (words & vocab) <= present, (cap, present)


@pytest.mark.parametrize("images", [400])
def test_answers_are_balanced_and_blind_baselines_low(tmp_path: Path, images: int) -> None:
    summary = generate_world(tmp_path, images=images, seed=11)
    _, questions = _load_world(tmp_path)
    by_family: dict[str, Counter] = defaultdict(Counter)
    for q in questions.values():
        by_family[q["types"]["detailed"]][q["answer"]] += 1
    for family, counts in by_family.items():
        if set(counts) <= {"yes", "no"} and sum(counts.values()) >= 40:
            share = counts["yes"] / sum(counts.values())
            assert 0.35 <= share <= 0.65, (family, counts)
    colours = by_family["query_color"]
    assert max(colours.values()) / sum(colours.values()) < 0.3, colours  # 6 colours, near uniform
    blind = summary["blind_baselines"]
    assert blind["majority_answer_accuracy"] < 0.2
    assert blind["question_only_accuracy"]["best"] < 0.5


def test_images_show_the_scene_colours(world_dir: Path) -> None:
    """Each object's colour is painted in its grid cell (a solid patch), and empty cells hold only background."""
    from vict.data.world.scene import COLORS

    scenes, _ = _load_world(world_dir)
    for image_id in range(1, 11):
        pixels = np.asarray(Image.open(world_dir / "images" / f"{image_id}.png"), dtype=np.int32)
        occupied = {(o["row"], o["col"]): o for o in scenes[image_id]["objects"]}
        for row in range(3):
            for col in range(3):
                cell = pixels[row * 64 // 3 : (row + 1) * 64 // 3, col * 64 // 3 : (col + 1) * 64 // 3].reshape(-1, 3)
                saturation = cell.max(axis=1) - cell.min(axis=1)
                if (row, col) not in occupied:
                    assert saturation.max() < 60, (image_id, row, col)
                    continue
                o = occupied[(row, col)]
                close = np.abs(cell - np.array(COLORS[o["color"]])).sum(axis=1) < 45
                assert close.sum() >= 9, (image_id, o, int(close.sum()))
