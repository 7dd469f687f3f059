"""Write the miniature world to disk in the official COCO caption and GQA question formats.

Layout of ``DIR``: ``vict.data.world.layout`` (all ids shared between the files; GQA's ``imageId`` is the COCO
``image_id`` as a string).

Splits: image ids are ``1..N`` in generation order; the last ``round(0.1 N)`` go to test, the
``round(0.1 N)`` before them to val, the rest to train (80/10/10; val and test get at least one image each
when N >= 3). Image k is the same for any N and the same seed, so a larger world extends a smaller one.
Same arguments, same bytes: per-image rngs from the seed, fixed PNG settings, no timestamps.

Besides the COCO and GQA files, the world holds ScienceQA-mini (``scienceqa.py``: problems made from every split's
scenes, in the official ScienceQA layout) and the val and test questions in the VQA v2 format (``vqav2.py``). Both
draw only from rngs of their own, so the COCO, GQA, image and scene files are byte for byte what they are without
them; ``summary.json`` gains the keys ``scienceqa`` and ``vqav2`` after all the others.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from vict.data.world.baselines import (
    SCIENCEQA_CATEGORIES,
    majority_answer_accuracy,
    question_only_accuracy,
    scienceqa_baselines,
    scienceqa_categories,
)
from vict.data.world.captions import make_captions
from vict.data.world.layout import (
    ANNOTATIONS_DIR,
    GENERATED_DIRS,
    IMAGES_DIR,
    SCENES_FILE,
    SPLITS,
    SUMMARY_FILE,
    VQAV2_SPLITS,
    world_files,
)
from vict.data.world.questions import KIND_OF_FAMILY, QUESTIONS_PER_IMAGE, make_questions
from vict.data.world.render import png_bytes, render_scene
from vict.data.world.scene import Scene, image_rng, sample_scene
from vict.data.world.scienceqa import write_scienceqa
from vict.data.world.vqav2 import write_vqav2

HELD_OUT_FRACTION = 0.1
"""Fraction of images in each of val and test."""
QUESTION_ID_STRIDE = 1000
"""Question id = ``image_id * QUESTION_ID_STRIDE + k``: unique, and the image is readable from the id."""


def split_sizes(n_images: int) -> dict[str, int]:
    """Images per split for a world of ``n_images`` (see the module doc)."""
    held = max(1, round(HELD_OUT_FRACTION * n_images)) if n_images >= 3 else 0
    return {"train": n_images - 2 * held, "val": held, "test": held}


def split_of_image(n_images: int) -> list[str]:
    """Split name of each image index ``0..n_images-1``."""
    sizes = split_sizes(n_images)
    return [name for name in SPLITS for _ in range(sizes[name])]


def _program_str(program: list[dict]) -> str:
    parts = []
    for op in program:
        deps = f" {op['dependencies']}" if op["dependencies"] else ""
        parts.append(f"{op['operation']}: {op['argument']}{deps}")
    return "->".join(parts)


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def generate_world(
    out: str | Path,
    images: int = 1000,
    seed: int = 0,
    size: int = 64,
    questions_per_image: int = QUESTIONS_PER_IMAGE,
    overwrite: bool = False,
) -> dict:
    """Generate the world into ``out`` and return the summary written to ``out/summary.json``.

    Args:
        out: output folder; refused if it already holds a world unless ``overwrite`` (which replaces
            ``images/``, ``annotations/``, ``scienceqa/``, ``vqav2/`` and ``summary.json``, and nothing else).
        images: number of images N (>= 1).
        seed: world seed; same (seed, images, size, questions_per_image) gives identical bytes.
        size: image side in pixels (>= 16).
        questions_per_image: questions per image, each of a different family (1..13).
    """
    out = Path(out)
    problems = []
    if images < 1:
        problems.append(f"images={images}: need at least 1 image (e.g. --images 200)")
    if size < 16:
        problems.append(f"size={size}: images smaller than 16 px cannot show 9 grid cells (use --size 64)")
    if not 1 <= questions_per_image <= 13:
        problems.append(f"questions_per_image={questions_per_image}: must be in 1..13 (one per question family)")
    if problems:
        raise ValueError("cannot generate the world:\n  " + "\n  ".join(problems))
    if (out / ANNOTATIONS_DIR).exists() or (out / SUMMARY_FILE).exists():
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a world; pass --overwrite to replace it or choose another --out"
            )
        for sub in GENERATED_DIRS:
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "summary.json").unlink(missing_ok=True)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (out / ANNOTATIONS_DIR).mkdir(parents=True, exist_ok=True)

    splits = split_of_image(images)
    coco = {
        s: {
            "info": {"description": f"vict miniature world, split {s}", "version": "1", "seed": seed},
            "licenses": [],
            "images": [],
            "annotations": [],
        }
        for s in SPLITS
    }
    gqa: dict[str, dict[str, dict]] = {s: {} for s in SPLITS}
    scenes = []
    world_scenes: list[Scene] = []
    for index in range(images):
        image_id = index + 1
        split = splits[index]
        scene = sample_scene(image_rng(seed, index, "scene"), image_id)
        picture = render_scene(scene, size, image_rng(seed, index, "render"))
        file_name = f"{image_id}.png"
        (out / IMAGES_DIR / file_name).write_bytes(png_bytes(picture))
        scenes.append(scene.to_json() | {"split": split, "file_name": file_name})
        world_scenes.append(scene)

        coco[split]["images"].append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for k, caption in enumerate(make_captions(scene, image_rng(seed, index, "captions"))):
            coco[split]["annotations"].append(
                {"image_id": image_id, "id": image_id * 10 + k, "caption": caption, "dense": k == 0}
            )
        questions = make_questions(scene, image_rng(seed, index, "questions"), questions_per_image)
        for k, q in enumerate(questions):
            qid = str(image_id * QUESTION_ID_STRIDE + k)
            gqa[split][qid] = {
                "imageId": str(image_id),
                "question": q.question,
                "answer": q.answer,
                "fullAnswer": q.full_answer,
                "isBalanced": True,
                "types": {"structural": q.structural, "semantic": q.semantic, "detailed": q.family},
                "groups": {"global": None, "local": q.family},
                "entailed": [],
                "equivalent": [qid],
                "annotations": {"question": {}, "answer": {}, "fullAnswer": {}},
                "semantic": q.program,
                "semanticStr": _program_str(q.program),
            }

    for s in SPLITS:
        files = world_files(out, s)
        _dump(files["captions"], coco[s])
        _dump(files["questions"], gqa[s])
    _dump(out / ANNOTATIONS_DIR / SCENES_FILE, {"seed": seed, "size": size, "scenes": scenes})

    problems = write_scienceqa(out, world_scenes, splits, seed)
    vqa_counts = write_vqav2(out, gqa, seed)

    # New keys go after the existing ones, so the rest of summary.json reads exactly as before.
    summary = summarize(gqa, coco, seed=seed, size=size)
    summary["scienceqa"] = summarize_scienceqa(problems)
    summary["vqav2"] = {"splits": list(VQAV2_SPLITS), "questions": vqa_counts}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def summarize(gqa: dict[str, dict[str, dict]], coco: dict[str, dict], seed: int, size: int) -> dict:
    """Counts by split and by question type, and the two blind baselines (fitted on train, scored on test)."""
    splits = {}
    for s in SPLITS:
        questions = gqa[s]
        kinds = Counter(KIND_OF_FAMILY[q["types"]["detailed"]] for q in questions.values())
        splits[s] = {
            "images": len(coco[s]["images"]),
            "captions": len(coco[s]["annotations"]),
            "questions": len(questions),
            "question_types": dict(sorted(kinds.items())),
            "structural": dict(sorted(Counter(q["types"]["structural"] for q in questions.values()).items())),
            "semantic": dict(sorted(Counter(q["types"]["semantic"] for q in questions.values()).items())),
        }
    answer, majority = majority_answer_accuracy(gqa["train"], gqa["test"])
    question_only = question_only_accuracy(gqa["train"], gqa["test"])
    return {
        "seed": seed,
        "image_size": size,
        "images": sum(v["images"] for v in splits.values()),
        "splits": splits,
        "blind_baselines": {
            "fitted_on": "train",
            "scored_on": "test",
            "majority_answer": answer,
            "majority_answer_accuracy": round(majority, 4),
            "question_only_accuracy": {k: round(v, 4) for k, v in question_only.items()},
        },
    }


def summarize_scienceqa(problems: dict[str, dict]) -> dict:
    """ScienceQA-mini problems per split and official category, and its blind baselines (on test)."""
    counts = {s: dict.fromkeys(SCIENCEQA_CATEGORIES, 0) for s in SPLITS}
    for p in problems.values():
        for cat in scienceqa_categories(p):
            counts[p["split"]][cat] += 1
    return {"problems": counts, "blind_baselines": scienceqa_baselines(problems)}
