"""ScienceQA-mini: the world's problems load with the official loader, populate every official category, carry
the world's images, are deterministic, and the blind baselines in summary.json are what the official scorer gives."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from vict.data.scienceqa import REQUIRED_KEYS, load_scienceqa
from vict.data.world import generate_world, split_sizes
from vict.data.world.baselines import (
    SCIENCEQA_CATEGORIES,
    question_pattern,
    scienceqa_question_only_predictions,
)
from vict.data.world.captions import dense_caption
from vict.data.world.layout import SPLITS, scienceqa_files
from vict.data.world.scene import POSITION_PHRASE, image_rng, sample_scene
from vict.data.world.scienceqa import SKILLS, make_scienceqa
from vict.eval.scienceqa import CATEGORIES, score_scienceqa

OFFICIAL_KEYS = {
    "question",
    "choices",
    "answer",
    "hint",
    "image",
    "task",
    "grade",
    "subject",
    "topic",
    "category",
    "skill",
    "lecture",
    "solution",
    "split",
}


def _load(world: Path, split: str):
    files = scienceqa_files(world)
    return load_scienceqa(files["problems"], files["pid_splits"], split=split, image_root=files["images_dir"])


def _problems(world: Path) -> dict[str, dict]:
    return json.loads(scienceqa_files(world)["problems"].read_text())


def _scenes(n: int, seed: int = 0):
    """The world's scenes without rendering (the generator draws them from the same rngs)."""
    return [sample_scene(image_rng(seed, k, "scene"), k + 1) for k in range(n)]


def _splits(n: int) -> list[str]:
    sizes = split_sizes(n)
    return [s for s in SPLITS for _ in range(sizes[s])]


def test_official_loader_accepts_every_split(world_dir: Path) -> None:
    problems = _problems(world_dir)
    pid_splits = json.loads(scienceqa_files(world_dir)["pid_splits"].read_text())
    assert set(pid_splits) == set(SPLITS)
    assert sorted(pid for pids in pid_splits.values() for pid in pids) == sorted(problems)
    assert list(problems) == [str(i) for i in range(1, len(problems) + 1)]
    for split in SPLITS:
        loaded = _load(world_dir, split)
        assert [p.pid for p in loaded] == pid_splits[split]
        assert all(p.split == split for p in loaded)
    for pid, rec in problems.items():
        assert set(rec) == OFFICIAL_KEYS, pid
        assert set(REQUIRED_KEYS) <= set(rec)


def test_choices_answers_and_contexts(world_dir: Path) -> None:
    problems = _problems(world_dir)
    coco = {s: json.loads((world_dir / "annotations" / f"captions_{s}.json").read_text()) for s in SPLITS}
    dense = {s: {a["caption"] for a in coco[s]["annotations"] if a["dense"]} for s in SPLITS}
    kinds: Counter = Counter()
    for pid, p in problems.items():
        assert 2 <= len(p["choices"]) <= 5 and len(set(p["choices"])) == len(p["choices"]), (pid, p["choices"])
        assert 0 <= p["answer"] < len(p["choices"])
        assert p["lecture"] and p["solution"]
        has_image, hint = p["image"] is not None, p["hint"]
        if has_image:
            assert p["image"] == "image.png"
            # An image's hint is never the full description: it must not settle the question alone.
            assert hint not in dense[p["split"]]
        elif hint:
            # TXT: the hint is the dense caption of a scene of the same split, in the world's caption language.
            assert hint in dense[p["split"]], (pid, hint)
            assert p["subject"] != "language science"
        else:
            assert p["subject"] == "language science", pid
        kinds["IMG+TXT" if has_image and hint else "IMG" if has_image else "TXT" if hint else "NO"] += 1
    assert all(kinds[k] > 0 for k in ("IMG", "IMG+TXT", "TXT", "NO")), kinds
    n_images = sum(len(coco[s]["images"]) for s in SPLITS)
    assert kinds["IMG"] + kinds["IMG+TXT"] == n_images  # one problem with its image per world image
    assert 1.3 * n_images <= len(problems) <= 1.7 * n_images  # TXT and NO add about half as many again


def test_images_are_the_world_images(world_dir: Path) -> None:
    problems = _problems(world_dir)
    coco = {s: json.loads((world_dir / "annotations" / f"captions_{s}.json").read_text()) for s in SPLITS}
    world_bytes = {
        s: {(world_dir / "images" / im["file_name"]).read_bytes() for im in coco[s]["images"]} for s in SPLITS
    }
    image_dir = scienceqa_files(world_dir)["images_dir"]
    on_disk = sorted(p.relative_to(image_dir).as_posix() for p in image_dir.rglob("*") if p.is_file())
    expected = sorted(f"{p['split']}/{pid}/image.png" for pid, p in problems.items() if p["image"])
    assert on_disk == expected
    for path in expected:
        split = path.split("/")[0]
        assert (image_dir / path).read_bytes() in world_bytes[split], path


def test_every_official_category_is_populated_in_every_split() -> None:
    n = 200
    problems, pid_splits, _ = make_scienceqa(_scenes(n), _splits(n), seed=0)
    for split in SPLITS:
        # Scored with the official categories (and the loader's view of them) via the scorer's own grouping.
        subset = {pid: problems[pid] for pid in pid_splits[split]}
        counts = Counter()
        for p in subset.values():
            counts[{"natural science": "NAT", "social science": "SOC", "language science": "LAN"}[p["subject"]]] += 1
            counts["TXT"] += bool(p["hint"])
            counts["IMG"] += p["image"] is not None
            counts["NO"] += not p["hint"] and p["image"] is None
            counts["G1-6" if int(p["grade"][5:]) <= 6 else "G7-12"] += 1
        assert all(counts[c] > 0 for c in CATEGORIES if c != "Average"), (split, counts)
    assert {p["skill"] for p in problems.values()} == {s.skill for s in SKILLS.values()}


def test_answer_index_is_uniform_and_choice_counts_vary() -> None:
    n = 1500
    problems, _, _ = make_scienceqa(_scenes(n), _splits(n), seed=0)
    by_n: dict[int, Counter] = {}
    for p in problems.values():
        by_n.setdefault(len(p["choices"]), Counter())[p["answer"]] += 1
    assert set(by_n) == {2, 3, 4, 5}
    for k, counts in by_n.items():
        total = sum(counts.values())
        assert set(counts) == set(range(k))
        for index in range(k):
            assert abs(counts[index] / total - 1 / k) < 0.07, (k, counts)


def test_scene_answers_are_true() -> None:
    """Re-derive a few skills' answers from the scene: colour, shape-at-position and counts."""
    n = 150
    scenes = _scenes(n)
    problems, _, image_of = make_scienceqa(scenes, _splits(n), seed=0)
    by_caption = {dense_caption(s): s for s in scenes}
    checked = 0
    for pid, p in problems.items():
        scene = scenes[image_of[pid] - 1] if pid in image_of else by_caption.get(p["hint"])
        if scene is None:
            continue
        answer = p["choices"][p["answer"]]
        q = p["question"]
        if q.startswith("Which shape is in the ") or q.startswith("Which shape is at the "):
            where = q.removeprefix("Which shape is ").removesuffix("?")
            (obj,) = [o for o in scene.objects if POSITION_PHRASE[o.position] == where]
            assert answer == obj.shape, (pid, q)
            checked += 1
        elif q == "How many objects are there?":
            assert answer == str(len(scene.objects))
            checked += 1
        elif q.startswith("How many ") and q.endswith("s are there?"):
            shape = q.removeprefix("How many ").removesuffix("s are there?")
            if shape in ("circle", "square", "triangle", "diamond"):
                assert answer == str(sum(o.shape == shape for o in scene.objects)), (pid, q)
                checked += 1
        # Every other choice is wrong: none of them is the answer text.
        assert p["choices"].count(answer) == 1
    assert checked >= 20


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("scienceqa", "vqav2")
            for p in sorted((root / sub).rglob("*"))
            if p.is_file()
        }

    generate_world(tmp_path / "a", images=30, seed=5)
    generate_world(tmp_path / "b", images=30, seed=5)
    generate_world(tmp_path / "c", images=30, seed=6)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b and len(a) > 30
    assert a["scienceqa/problems.json"] != c["scienceqa/problems.json"]


def test_problems_of_an_image_do_not_depend_on_world_size() -> None:
    small, _, _ = make_scienceqa(_scenes(40), ["train"] * 40, seed=2)
    big, _, _ = make_scienceqa(_scenes(90), ["train"] * 90, seed=2)
    assert all(big[pid] == rec for pid, rec in small.items())


def test_overwrite_replaces_scienceqa(tmp_path: Path) -> None:
    generate_world(tmp_path, images=12, seed=0)
    generate_world(tmp_path, images=5, seed=0, overwrite=True)
    problems = _problems(tmp_path)
    images = [p for p in scienceqa_files(tmp_path)["images_dir"].rglob("*.png")]
    assert len(images) == sum(p["image"] is not None for p in problems.values()) == 5


def test_question_pattern_abstracts_the_world_vocabulary() -> None:
    assert question_pattern("What colour is the small circle?") == "What colour is the <size> <shape>?"
    assert question_pattern("How many red objects are there?") == "How many <colour> objects are there?"
    assert (
        question_pattern("Where is the square in the top left?")
        == "Where is the <shape> in the <position> <position>?"
    )
    assert question_pattern('Which word completes the sentence "There are 3 ___."?').count("<number>") == 1


def test_summary_baselines_equal_the_official_scorer(world_dir: Path) -> None:
    summary = json.loads((world_dir / "summary.json").read_text())["scienceqa"]
    problems = _problems(world_dir)
    test = _load(world_dir, "test")
    train = {pid: p for pid, p in problems.items() if p["split"] == "train"}
    test_recs = {p.pid: problems[p.pid] for p in test}
    for split in SPLITS:
        assert summary["problems"][split]["Average"] == len(_load(world_dir, split))

    # Question-only: predictions fitted on train, scored by the official scorer on test.
    preds = scienceqa_question_only_predictions(train, test_recs)
    scored = score_scienceqa(preds, test)["categories"]
    blind = summary["blind_baselines"]
    assert set(blind["question_only_accuracy"]) == set(SCIENCEQA_CATEGORIES) == set(CATEGORIES)
    for cat in CATEGORIES:
        acc = scored[cat]["accuracy"]
        assert blind["question_only_accuracy"][cat] == (None if acc is None else round(acc / 100, 4)), cat
        assert summary["problems"]["test"][cat] == scored[cat]["count"], cat

    # Random choice: the exact expectation, mean of 1/len(choices) per category (recomputed from the loader's view).
    for cat in CATEGORIES:
        members = [
            p
            for p in test
            if cat == "Average"
            or {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}[p.subject] == cat
            or (cat == "TXT" and p.has_text)
            or (cat == "IMG" and p.has_image)
            or (cat == "NO" and not p.has_text and not p.has_image)
            or (cat == "G1-6" and p.grade_number <= 6)
            or (cat == "G7-12" and p.grade_number >= 7)
        ]
        expected = round(sum(1 / len(p.choices) for p in members) / len(members), 4) if members else None
        assert blind["random_choice_accuracy"][cat] == pytest.approx(expected), cat


def test_question_only_baseline_follows_its_rule() -> None:
    def rec(question: str, choices: list[str], answer: int, split: str) -> dict:
        return {"question": question, "choices": choices, "answer": answer, "split": split}

    train = {
        "1": rec("What colour is the circle?", ["red", "blue"], 0, "train"),
        "2": rec("What colour is the square?", ["green", "red"], 1, "train"),
        "3": rec("What colour is the square?", ["blue", "green"], 0, "train"),
    }
    test = {
        "4": rec("What colour is the diamond?", ["blue", "red", "green"], 2, "test"),  # pattern seen: "red" -> 1
        "5": rec("What colour is the diamond?", ["blue", "green"], 0, "test"),  # "red" not a choice -> 0
        "6": rec("Which word is a colour?", ["small", "red"], 1, "test"),  # unseen pattern -> 0
    }
    assert scienceqa_question_only_predictions(train, test) == {"4": 1, "5": 0, "6": 0}
