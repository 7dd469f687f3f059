"""``vict eval``: the command-line face of ``vict.recipes.evaluate`` (parse, load, call, print)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vict.data.scienceqa import FORMATS
from vict.eval.scienceqa import FAILED_RULES
from vict.eval.splits import (
    ALL_TASKS,
    DEFAULT_SETTINGS,
    SETTINGS,
    TASKS,
    EvalSplit,
    VQAv2Split,
    context_sources,
    load_eval_files,
    load_eval_split,
    load_vqav2,
    load_world_vqav2,
    missing_context_reason,
    world_scienceqa_problems,
)
from vict.recipes.evaluate import BATCH_SIZE, IMAGE_BLOCK, evaluate_model

EPILOG = """examples:
  vict eval --checkpoint runs/vict_lora/final --data world --split test
  vict eval --checkpoint runs/vict_lora/final --data world --tasks gqa --limit 50 --out runs/eval_lora
  vict eval --blip2 zoo/blip2 --data world --out runs/eval_blip2            # baseline rows, same harness
  vict eval --checkpoint runs/vict_lora/final --blip2 zoo/blip2 --data world --out runs/eval_both --fast
  vict eval --checkpoint runs/vict_lora/final --data world --tasks gqa --gqa-settings caption,distractor,dense
  vict eval --checkpoint runs/vict_lora/final --data world --skip-bad    # bad records/images counted in the report

  # real data: COCO Karpathy test captions, GQA testdev (its images have no COCO captions: the `caption`
  # setting is then skipped with a note, as are `dense` and `distractor`; `none`, `self` and `qa` run)
  vict eval --checkpoint runs/vict_lora/final --captions coco/annotations/coco_karpathy_test.json \\
      --images coco/images --tasks caption --out runs/eval_coco
  vict eval --checkpoint runs/vict_lora/final --questions gqa/testdev_balanced_questions.json \\
      --images gqa/images --tasks gqa --out runs/eval_gqa
  # captions and questions on the same images (GQA val images joined to COCO through VG's image_data.json)
  vict eval --checkpoint runs/vict_lora/final --captions coco/annotations/captions_val2014.json \\
      --images coco/images/val2014 --questions gqa/val_balanced_questions.json --question-images gqa/images \\
      --vg-image-data vg/image_data.json --limit 500

  # ScienceQA (official layout: pid_splits.json and images/ beside problems.json) and VQAv2 (official files)
  vict eval --checkpoint runs/vict_sqa/final --scienceqa scienceqa/problems.json --scienceqa-split test
  vict eval --checkpoint runs/vict_lora/final --vqav2-questions vqa/v2_OpenEnded_mscoco_val2014_questions.json \\
      --vqav2-annotations vqa/v2_mscoco_val2014_annotations.json --vqav2-images coco/images/val2014 --limit 500
  # a world's own ScienceQA / VQAv2 files (scienceqa/problems.json, vqav2/...) next to captions and GQA
  vict eval --checkpoint runs/vict_lora/final --data world --tasks caption,gqa,scienceqa,vqav2

--data is a folder in the world layout (vict data world --out DIR): images/, annotations/captions_<split>.json
(COCO captions), annotations/<split>_balanced_questions.json (GQA questions). Or give the files: --captions
(official captions_*.json, Karpathy dataset_coco.json with --karpathy-split, or LAVIS coco_karpathy_*.json),
--questions (GQA balanced questions), --images (and --question-images if GQA images live elsewhere).
Outputs in --out: report.json, report.md, predictions/ (COCO results and GQA predictions files, scorable with
vict score; each GQA record also names its context). --fast skips METEOR (its JVM takes ~20 s to start) and SPICE.

Before any model runs, every caption and question record is type-checked (as the data loaders do: integer ids,
non-empty string captions, questions and answers) and every evaluated image is decoded. Without --skip-bad the first
bad record (or the list of bad images) stops the run with one error naming the file, the record and the field; with
--skip-bad they are left out (with the questions of a skipped image) and counted in report.json (skipped_inputs)
and in the report's notes.

GQA context settings (--gqa-settings; default: every one the data supports, the others noted in the report):
none (the question alone), caption (a gold caption), self (the model's own caption), qa (another question-answer
pair of the image), dense (the caption flagged "dense": true, an oracle; world data only), distractor (the gold
caption of another image with other objects). A setting named in --gqa-settings that the data cannot give (dense on
real COCO captions) is an error. Accuracy by question type (GQA types.structural/semantic/detailed) is in
report.json (gqa.<setting>.by_type) and report.md.

Tasks (--tasks; default caption,gqa when --data or caption/question files are given, plus the task of each of
--scienceqa / --vqav2-* given): scienceqa asks every problem of --scienceqa-split with the model's training prompt
(problems without an image as text-only rows; a plain BLIP-2 gets a blank image instead, said in the report), takes
the first "The answer is X." (a failed one: a seeded random choice, or -1 with --scienceqa-failed wrong) and scores
the official categories (NAT SOC LAN TXT IMG NO G1-6 G7-12 Average, per topic). vqav2 asks every question with the
short-answer prompt (no context) and scores the official VQAv2 accuracy (overall, per answer and question type).
With --data (alias --world), both read the world's own files: scienceqa/problems.json,
vqav2/v2_OpenEnded_mscoco_<split>_questions.json and vqav2/v2_mscoco_<split>_annotations.json (images through
annotations/captions_<split>.json).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict eval`` options."""
    parser.add_argument("--checkpoint", help="VICT checkpoint directory (a training run's final/ or step-N)")
    parser.add_argument("--blip2", help="plain BLIP-2 directory or hub id, evaluated as a baseline")
    data = parser.add_argument_group("data (a world folder, or real annotation files)")
    data.add_argument("--data", "--world", dest="data", help="data folder in the world layout (vict data world)")
    data.add_argument("--split", default="test", help="world split to evaluate (default test); with files: its name")
    data.add_argument("--captions", action="append", metavar="FILE", help="COCO captions file (repeatable)")
    data.add_argument("--questions", action="append", metavar="FILE", help="GQA balanced questions file (repeatable)")
    data.add_argument("--images", metavar="DIR", help="folder the annotation files' image names are relative to")
    data.add_argument("--question-images", metavar="DIR", help="GQA images folder, if not --images")
    data.add_argument("--vg-image-data", metavar="FILE", help="VG image_data.json: join GQA image ids to COCO ids")
    data.add_argument(
        "--karpathy-split", choices=("train", "val", "test"), help="split of a Karpathy dataset_coco.json"
    )
    data.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad caption/question records and unreadable images (counted in the report) instead of failing",
    )
    extra = parser.add_argument_group("ScienceQA and VQAv2 (official files; or, with --data, the world's own)")
    extra.add_argument(
        "--scienceqa", metavar="PROBLEMS_JSON", help="ScienceQA problems.json (adds the scienceqa task)"
    )
    extra.add_argument("--scienceqa-split", default="test", help="key of pid_splits.json (default test)")
    extra.add_argument("--scienceqa-format", default="QCM-A", choices=FORMATS, help="prompt format (default QCM-A)")
    extra.add_argument(
        "--scienceqa-failed",
        default="random",
        choices=FAILED_RULES,
        help="an answer with no valid letter: a seeded random choice (the reference) or wrong (LLaVA's -1)",
    )
    extra.add_argument("--vqav2-questions", metavar="FILE", help="v2_OpenEnded_mscoco_<split>_questions.json")
    extra.add_argument("--vqav2-annotations", metavar="FILE", help="v2_mscoco_<split>_annotations.json")
    extra.add_argument("--vqav2-images", metavar="DIR", help="COCO images (COCO_<subtype>_<id:012d>.jpg)")
    parser.add_argument(
        "--tasks",
        help=f"comma-separated among {','.join(ALL_TASKS)} (default caption,gqa with data, plus the tasks of the "
        "ScienceQA/VQAv2 files given)",
    )
    parser.add_argument(
        "--gqa-settings",
        "--settings",
        dest="gqa_settings",
        metavar="LIST",
        help=f"comma-separated GQA context settings among {','.join(SETTINGS)} (default: all the data supports "
        "but text, which asks with the gold caption and no image: name it to run it)",
    )
    parser.add_argument("--out", help="output folder (default eval-<split>)")
    parser.add_argument(
        "--limit", type=int, help="evaluate only the first N images of the split (ScienceQA: the first N problems)"
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"generation batch size ({BATCH_SIZE})")
    parser.add_argument("--max-new-tokens", type=int, help="one generation budget for captions and answers")
    parser.add_argument(
        "--image-block", type=int, default=IMAGE_BLOCK, help="images whose features and prompt prefixes stay cached"
    )
    parser.add_argument(
        "--no-prefix-reuse",
        action="store_true",
        help="prefill every prompt whole (same predictions, slower; the prefix caches of a block of images take "
        "layers x 2 x prefix length x KV width each: 17 MB per image for LLaMA-7B in bf16)",
    )
    parser.add_argument("--no-sentence", action="store_true", help="skip the sentence-answer score")
    parser.add_argument("--fast", action="store_true", help="skip METEOR and SPICE (their JVMs are slow to start)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 for models under 50M parameters on CPU, else torch's choice)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def _split_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        unknown = f" ({', '.join(repr(b) for b in bad)} unknown)" if bad else ""
        raise ValueError(f"--{what} {text!r}{unknown}: use a comma-separated subset of {','.join(allowed)}")
    return items


def check_settings_supported(data: EvalSplit, settings: Sequence[str]) -> None:
    """A ``ValueError`` naming every requested GQA setting that no question of ``data`` has a context for (e.g.
    ``dense`` on real COCO captions, which flag no caption dense), why, and the settings the data supports."""
    unsupported = [s for s in settings if not context_sources(data, s)]
    if not unsupported or not data.questions:
        return
    supported = [s for s in DEFAULT_SETTINGS if context_sources(data, s)]
    why = "; ".join(f"{s}: a question has no context when {missing_context_reason(s)}" for s in unsupported)
    raise ValueError(
        f"--gqa-settings {','.join(settings)}: no evaluated question has a context for {','.join(unsupported)} "
        f"({why}); this data supports --gqa-settings {','.join(supported)} (or leave the option out: all of those)"
    )


def resolve_tasks(args: argparse.Namespace) -> list[str]:
    """``--tasks`` (checked), or the default: ``caption,gqa`` when caption/GQA data is given, plus ``scienceqa`` /
    ``vqav2`` when their files are given (a file given always adds its task)."""
    vqav2_files = any([args.vqav2_questions, args.vqav2_annotations, args.vqav2_images])
    if args.tasks is not None:
        tasks = _split_list(args.tasks, ALL_TASKS, "tasks")
    else:
        core_data = args.data or any([args.captions, args.questions, args.images])
        tasks = list(TASKS) if core_data or not (args.scienceqa or vqav2_files) else []
    tasks += [t for t, given in (("scienceqa", args.scienceqa), ("vqav2", vqav2_files)) if given and t not in tasks]
    return tasks


def scienceqa_source(args: argparse.Namespace, tasks: Sequence[str]) -> Path | None:
    """The ``problems.json`` of the scienceqa task (``--scienceqa``, else the world's), checked by loading the split
    (a ``DataError`` listing every invalid problem, before any model is loaded)."""
    if "scienceqa" not in tasks:
        return None
    from vict.data.scienceqa import load_scienceqa

    if args.scienceqa:
        path = Path(args.scienceqa)
    elif args.data and world_scienceqa_problems(args.data).is_file():
        path = world_scienceqa_problems(args.data)
    else:
        where = f"--data {args.data} has no {world_scienceqa_problems(args.data)}" if args.data else "no --data"
        raise ValueError(f"--tasks scienceqa: {where}; pass --scienceqa PROBLEMS_JSON (the official problems.json)")
    load_scienceqa(path, split=args.scienceqa_split)
    return path


def vqav2_source(args: argparse.Namespace, tasks: Sequence[str]) -> VQAv2Split | None:
    """The vqav2 task's questions: the three ``--vqav2-*`` files, else the world's (``--data``, split ``--split``)."""
    if "vqav2" not in tasks:
        return None
    files = {"--vqav2-questions": args.vqav2_questions, "--vqav2-annotations": args.vqav2_annotations}
    files["--vqav2-images"] = args.vqav2_images
    if any(files.values()):
        lacking = [flag for flag, value in files.items() if not value]
        if lacking:
            raise ValueError(f"VQAv2: also pass {', '.join(lacking)} (questions, annotations and images go together)")
        return load_vqav2(args.vqav2_questions, args.vqav2_annotations, args.vqav2_images, limit=args.limit)
    if not args.data:
        raise ValueError(
            "--tasks vqav2: no data; pass --vqav2-questions FILE --vqav2-annotations FILE --vqav2-images DIR, or "
            "--data WORLD with vqav2/ files"
        )
    return load_world_vqav2(args.data, args.split, args.limit)


def _load_data(args: argparse.Namespace, tasks: Sequence[str]) -> EvalSplit:
    files = [args.captions, args.questions, args.images, args.question_images, args.vg_image_data]
    if args.data and any(files):
        raise ValueError("give either --data DIR (world layout) or --captions/--questions/--images files, not both")
    policy = "skip" if args.skip_bad else "fail"
    if args.data:
        return load_eval_split(args.data, args.split, tasks, args.limit, policy=policy)
    if not any(files):
        raise ValueError("no data: pass --data DIR (world layout) or --captions FILE / --questions FILE --images DIR")
    return load_eval_files(
        args.captions,
        args.questions,
        args.images,
        question_images_dir=args.question_images,
        vg_image_data=args.vg_image_data,
        karpathy_split=args.karpathy_split,
        tasks=tasks,
        limit=args.limit,
        name=args.split,
        policy=policy,
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate the given model(s), print the tables, write the reports. Exit 2 on bad input."""
    from vict.data.policy import DataError
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.eval.captioning import CAPTION_METRICS, FAST_CAPTION_METRICS, prewarm_meteor
    from vict.eval.evaluation_report import write_report
    from vict.inference import VictEngine
    from vict.inference.blip2 import Blip2Engine

    try:
        if not args.checkpoint and not args.blip2:
            raise ValueError("pass --checkpoint DIR (a VICT model) and/or --blip2 DIR_OR_HUB_ID (a baseline)")
        for flag, value in [("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens)]:
            if value is not None and value < 1:
                raise ValueError(f"{flag} {value}: must be >= 1")
        for flag, value in [("--batch-size", args.batch_size), ("--image-block", args.image_block)]:
            if value < 1:
                raise ValueError(f"{flag} {value}: must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads {args.threads}: must be >= 1")
        tasks = resolve_tasks(args)
        settings = None if args.gqa_settings is None else _split_list(args.gqa_settings, SETTINGS, "gqa-settings")
        core = [t for t in tasks if t in TASKS]
        # fail on bad data before loading models
        data = _load_data(args, core) if core else None
        scienceqa = scienceqa_source(args, tasks)
        vqav2 = vqav2_source(args, tasks)
        if settings is not None and data is not None and "gqa" in tasks:
            check_settings_supported(data, settings)
        metrics = FAST_CAPTION_METRICS if args.fast else CAPTION_METRICS
        if "caption" in tasks and "METEOR" in metrics:
            prewarm_meteor()  # loads while the models load and generate
        engines = []
        if args.blip2:
            blip2 = Blip2Baseline.from_pretrained(args.blip2, device=args.device)
            name = f"BLIP-2 ({Path(args.blip2).name})"
            engines.append(Blip2Engine(blip2, name, args.batch_size, args.max_new_tokens))
        if args.checkpoint:
            name = f"VICT ({Path(args.checkpoint).resolve().name})"
            engines.append(
                VictEngine.from_checkpoint(
                    args.checkpoint,
                    device=args.device,
                    batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens,
                    name=name,
                    reuse_prefix=not args.no_prefix_reuse,
                )
            )
    except (ValueError, FileNotFoundError, OSError, DataError) as e:
        print(f"vict eval: error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or f"eval-{args.split}")
    reports = {}
    try:
        for engine in engines:
            reports[engine.name] = evaluate_model(
                engine,
                data if data is not None else args.data,  # a world folder: the report names it
                tasks=tasks,
                out_dir=out_dir,
                settings=settings,
                sentence=not args.no_sentence,
                caption_metrics=metrics,
                image_block=args.image_block,
                threads=args.threads,
                limit=args.limit,
                scienceqa=scienceqa,
                scienceqa_split=args.scienceqa_split,
                scienceqa_format=args.scienceqa_format,
                scienceqa_failed=args.scienceqa_failed,
                vqav2=vqav2,
                bad_input="skip" if args.skip_bad else "fail",
            )
    except DataError as e:  # checked up front; an image changed or removed while the models ran
        print(f"vict eval: error: {e}", file=sys.stderr)
        return 2
    first = next(iter(reports.values()))
    title = f"Evaluation on {data.data} ({data.name})" if data else f"Evaluation on {first['data']} ({first['split']})"
    json_path, md_path = write_report(reports, out_dir, title=title)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0
