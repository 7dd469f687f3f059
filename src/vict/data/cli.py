"""``vict data``: generate the miniature world, print data-set statistics and built instructions."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

EPILOG = """examples:
  vict data world --out world --images 1000 --seed 0          # 64 px images, 80/10/10 splits, a few seconds
  vict data world --out world --images 200 --size 96 --overwrite
  vict data stats world                                        # counts per split, caption/question join
  vict data stats world --verify-images                        # also decode every image (truncated, bombs, ...)
  vict data stats world --verify-images --skip-bad             # count bad records/images instead of failing
  vict data stats --captions captions_train2014.json --questions train_balanced_questions.json \\
      --vg-image-data image_data.json                          # real COCO + GQA joined through VG
  vict data show world --n 3                                   # 3 built instructions of each type
  vict data show world --n 2 --split val --style sentence

Every annotation record is type-checked as it is loaded (COCO: integer ids, non-empty string captions of listed
images; GQA: non-empty string question and answer, string imageId). Without --skip-bad, `stats` lists every bad
record (and, with --verify-images, every image that is missing, truncated, unreadable or over the pixel limit:
$VICT_MAX_IMAGE_PIXELS, default 89,478,485) and exits 2; with --skip-bad it counts them and reports the rest.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    w = sub.add_parser("world", help="generate the miniature world (COCO captions + GQA questions + PNGs)")
    w.add_argument("--out", type=Path, required=True, help="output folder")
    w.add_argument("--images", type=int, default=1000, help="number of images (default 1000)")
    w.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    w.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    w.add_argument("--questions-per-image", type=int, default=6, help="questions per image (default 6)")
    w.add_argument("--overwrite", action="store_true", help="replace an existing world in --out")

    s = sub.add_parser("stats", help="counts per split and how captions and questions join per image")
    s.add_argument("dir", type=Path, nargs="?", help="a world folder (or any folder with the same layout)")
    s.add_argument("--captions", type=Path, nargs="*", default=[], help="COCO caption files")
    s.add_argument("--questions", type=Path, nargs="*", default=[], help="GQA question files")
    s.add_argument("--vg-image-data", type=Path, help="VG image_data.json (GQA image id -> COCO id)")
    s.add_argument("--images-dir", type=Path, help="images folder (for image paths)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.add_argument(
        "--verify-images",
        action="store_true",
        help="open and fully decode every referenced image; report missing, truncated, unreadable and too-large ones",
    )

    sh = sub.add_parser("show", help="print a few built VICT instructions of each type")
    sh.add_argument("dir", type=Path, help="a world folder")
    sh.add_argument("--split", default="train", help="split (default train)")
    sh.add_argument("--n", type=int, default=3, help="examples per instruction type (default 3)")
    sh.add_argument("--style", choices=["short", "sentence"], default=None, help="answer style (default: both)")
    sh.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sh.add_argument("--templates", type=Path, help="YAML file of prompt templates (default: built-in)")

    for p in (s, sh):
        p.add_argument("--skip-bad", action="store_true", help="skip and count bad records instead of failing")


def _run_world(args: argparse.Namespace) -> int:
    from vict.data.world import generate_world

    start = time.perf_counter()
    summary = generate_world(
        args.out,
        images=args.images,
        seed=args.seed,
        size=args.size,
        questions_per_image=args.questions_per_image,
        overwrite=args.overwrite,
    )
    elapsed = time.perf_counter() - start
    splits = summary["splits"]
    print(f"wrote {summary['images']} images ({args.size}x{args.size}) to {args.out} in {elapsed:.1f}s")
    for name, s in splits.items():
        print(f"  {name:5s}: {s['images']:6d} images  {s['captions']:7d} captions  {s['questions']:7d} questions")
    b = summary["blind_baselines"]
    print(
        f"blind baselines on test: majority answer {b['majority_answer']!r} "
        f"{100 * b['majority_answer_accuracy']:.1f}%, best question-only "
        f"{100 * b['question_only_accuracy']['best']:.1f}%"
    )
    print(f"summary: {args.out / 'summary.json'}")
    return 0


def _stats_rows(records: list) -> dict:
    n_caps = sum(len(r.captions) for r in records)
    n_qas = sum(len(r.qas) for r in records)
    types = Counter(qa.structural or "unknown" for r in records for qa in r.qas)
    return {
        "images": len(records),
        "captions": n_caps,
        "questions": n_qas,
        "with_image_file": sum(r.image_path is not None and r.image_path.exists() for r in records),
        "structural": dict(sorted(types.items())),
    }


def _verify(records: list, report) -> dict:
    """Decode every image of ``records``; each bad one is added to ``report``. Returns the split's image counts."""
    from vict.data.images import check_images

    bad = check_images([(f"image {r.image_id}", r.image_path) for r in records])
    for error in bad:
        report.add(error)
    return {"verified": len(records) - len(bad), "bad": len(bad), **Counter(e.reason for e in bad)}


def _run_stats(args: argparse.Namespace) -> int:
    data_logger = logging.getLogger("vict.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)  # the loaders' skip warnings: stats prints its own complete list
    try:
        return _stats(args)
    finally:
        data_logger.setLevel(level)


def _stats(args: argparse.Namespace) -> int:
    from vict.data.dataset import load_dataset
    from vict.data.policy import MAX_LISTED, BadInputPolicy, SkipReport
    from vict.data.world import SPLITS, world_files

    # Every bad input is gathered (skip mode underneath), then reported: counted with --skip-bad, else listed
    # together with exit 2, so that one run shows everything to fix.
    policy = BadInputPolicy("skip", report=SkipReport(max_examples=MAX_LISTED))
    result: dict[str, dict] = {}
    if args.captions or args.questions:
        if args.verify_images and args.images_dir is None:
            raise ValueError("--verify-images needs --images-dir (the folder the annotation files' images are in)")
        loaded = load_dataset(
            args.captions or None, args.questions or None, args.images_dir, args.vg_image_data, policy=policy
        )
        result["files"] = _stats_rows(loaded.records) | {"join": loaded.join.to_json()}
        if args.verify_images:
            result["files"]["image_check"] = _verify(loaded.records, policy.report)
    elif args.dir is not None:
        for split in SPLITS:
            files = world_files(args.dir, split)
            if not files["captions"].exists() and not files["questions"].exists():
                continue
            loaded = load_dataset(
                files["captions"] if files["captions"].exists() else None,
                files["questions"] if files["questions"].exists() else None,
                files["images_dir"],
                policy=policy,
            )
            result[split] = _stats_rows(loaded.records) | {"join": loaded.join.to_json()}
            if args.verify_images:
                result[split]["image_check"] = _verify(loaded.records, policy.report)
        if not result:
            print(f"error: no annotations/captions_<split>.json or <split>_balanced_questions.json under {args.dir}")
            return 2
    else:
        print("error: give a folder (vict data stats world) or --captions/--questions files")
        return 2
    if policy.report and not args.skip_bad:
        print(f"error: {policy.report.summary(verb='found')}", file=sys.stderr)
        print(
            "fix or remove those records/images, or pass --skip-bad to skip and count them (training: "
            "data.bad_input=skip; evaluation: vict eval --skip-bad)",
            file=sys.stderr,
        )
        return 2
    if args.json:
        print(json.dumps(result | {"skipped": policy.report.to_json()}, indent=2))
        return 0
    for name, r in result.items():
        j = r["join"]
        print(
            f"{name}: {r['images']} images, {r['captions']} captions, {r['questions']} questions, "
            f"{r['with_image_file']} image files found"
        )
        print(
            f"  join: {j['both']} images with captions and questions, {j['captions_only']} captions only, "
            f"{j['questions_only']} questions only"
            + (f" ({j['questions_unmapped']} without a COCO id in VG)" if j["questions_unmapped"] else "")
        )
        if r["structural"]:
            print("  question types: " + ", ".join(f"{k} {v}" for k, v in r["structural"].items()))
        if "image_check" in r:
            c = r["image_check"]
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(c.items()) if k not in ("verified", "bad"))
            print(f"  images decoded: {c['verified']} ok, {c['bad']} bad" + (f" ({reasons})" if reasons else ""))
    if policy.report:
        print(policy.report.summary())
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from vict.data.dataset import load_world_split
    from vict.data.policy import BadInputPolicy
    from vict.data.prompts import KINDS, STYLES, InstructionBuilder, load_templates

    policy = BadInputPolicy("skip" if args.skip_bad else "fail")
    records = load_world_split(args.dir, args.split, policy=policy)
    templates = load_templates(args.templates) if args.templates else None
    builder = InstructionBuilder(templates=templates, seed=args.seed)
    styles = [args.style] if args.style else list(STYLES)
    rng = random.Random(args.seed)
    for kind in KINDS:
        usable = [r for r in records if builder.can_build(r, kind)]
        print(f"=== {kind} ({len(usable)} of {len(records)} images can build it)")
        for i in range(min(args.n, len(usable))):
            record = usable[rng.randrange(len(usable))]
            style = styles[i % len(styles)]
            ex = builder.build(record, kind, style, rng)
            print(f"[image {ex.image_id}, style {ex.style}]")
            print(f"  prompt: {ex.prompt}")
            print(f"  target: {ex.target}")
    if policy.report:
        print(policy.report.summary())
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``vict data <subcommand>``; returns the exit code (2 with a one-line error for bad input)."""
    handler = {"world": _run_world, "stats": _run_stats, "show": _run_show}[args.data_command]
    try:
        return handler(args)
    except (ValueError, FileExistsError, FileNotFoundError) as e:  # DataError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vict data show world | head`: the reader left; not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 0
