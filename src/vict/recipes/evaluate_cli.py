"""``vict eval``: the command-line face of ``vict.recipes.evaluate`` (parse, load, call, print)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vict.eval.splits import (
    SETTINGS,
    TASKS,
    EvalSplit,
    context_sources,
    load_eval_files,
    load_eval_split,
    missing_context_reason,
)
from vict.recipes.evaluate import BATCH_SIZE, IMAGE_BLOCK, evaluate_model

EPILOG = """examples:
  vict eval --checkpoint runs/vict_lora/final --data world --split test
  vict eval --checkpoint runs/vict_lora/final --data world --tasks gqa --limit 50 --out runs/eval_lora
  vict eval --blip2 zoo/blip2 --data world --out runs/eval_blip2            # baseline rows, same harness
  vict eval --checkpoint runs/vict_lora/final --blip2 zoo/blip2 --data world --out runs/eval_both --fast
  vict eval --checkpoint runs/vict_lora/final --data world --tasks gqa --gqa-settings caption,distractor,dense

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

--data is a folder in the world layout (vict data world --out DIR): images/, annotations/captions_<split>.json
(COCO captions), annotations/<split>_balanced_questions.json (GQA questions). Or give the files: --captions
(official captions_*.json, Karpathy dataset_coco.json with --karpathy-split, or LAVIS coco_karpathy_*.json),
--questions (GQA balanced questions), --images (and --question-images if GQA images live elsewhere).
Outputs in --out: report.json, report.md, predictions/ (COCO results and GQA predictions files, scorable with
vict score; each GQA record also names its context). --fast skips METEOR (its JVM takes ~20 s to start) and SPICE.

GQA context settings (--gqa-settings; default: every one the data supports, the others noted in the report):
none (the question alone), caption (a gold caption), self (the model's own caption), qa (another question-answer
pair of the image), dense (the caption flagged "dense": true, an oracle; world data only), distractor (the gold
caption of another image with other objects). A setting named in --gqa-settings that the data cannot give (dense on
real COCO captions) is an error. Accuracy by question type (GQA types.structural/semantic/detailed) is in
report.json (gqa.<setting>.by_type) and report.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict eval`` options."""
    parser.add_argument("--checkpoint", help="VICT checkpoint directory (a training run's final/ or step-N)")
    parser.add_argument("--blip2", help="plain BLIP-2 directory or hub id, evaluated as a baseline")
    data = parser.add_argument_group("data (a world folder, or real annotation files)")
    data.add_argument("--data", help="data folder in the world layout (vict data world)")
    data.add_argument("--split", default="test", help="world split to evaluate (default test); with files: its name")
    data.add_argument("--captions", action="append", metavar="FILE", help="COCO captions file (repeatable)")
    data.add_argument("--questions", action="append", metavar="FILE", help="GQA balanced questions file (repeatable)")
    data.add_argument("--images", metavar="DIR", help="folder the annotation files' image names are relative to")
    data.add_argument("--question-images", metavar="DIR", help="GQA images folder, if not --images")
    data.add_argument("--vg-image-data", metavar="FILE", help="VG image_data.json: join GQA image ids to COCO ids")
    data.add_argument(
        "--karpathy-split", choices=("train", "val", "test"), help="split of a Karpathy dataset_coco.json"
    )
    parser.add_argument("--tasks", default="caption,gqa", help="comma-separated: caption,gqa (default both)")
    parser.add_argument(
        "--gqa-settings",
        "--settings",
        dest="gqa_settings",
        metavar="LIST",
        help=f"comma-separated GQA context settings among {','.join(SETTINGS)} (default: all the data supports)",
    )
    parser.add_argument("--out", help="output folder (default eval-<split>)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images of the split")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"generation batch size ({BATCH_SIZE})")
    parser.add_argument("--max-new-tokens", type=int, help="one generation budget for captions and answers")
    parser.add_argument("--image-block", type=int, default=IMAGE_BLOCK, help="images whose features stay cached")
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
    supported = [s for s in SETTINGS if context_sources(data, s)]
    why = "; ".join(f"{s}: a question has no context when {missing_context_reason(s)}" for s in unsupported)
    raise ValueError(
        f"--gqa-settings {','.join(settings)}: no evaluated question has a context for {','.join(unsupported)} "
        f"({why}); this data supports --gqa-settings {','.join(supported)} (or leave the option out: all of those)"
    )


def _load_data(args: argparse.Namespace, tasks: Sequence[str]) -> EvalSplit:
    files = [args.captions, args.questions, args.images, args.question_images, args.vg_image_data]
    if args.data and any(files):
        raise ValueError("give either --data DIR (world layout) or --captions/--questions/--images files, not both")
    if args.data:
        return load_eval_split(args.data, args.split, tasks, args.limit)
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
        tasks = _split_list(args.tasks, TASKS, "tasks")
        settings = None if args.gqa_settings is None else _split_list(args.gqa_settings, SETTINGS, "gqa-settings")
        data = _load_data(args, tasks)  # fail on bad data before loading models
        if settings is not None and "gqa" in tasks:
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
                )
            )
    except (ValueError, FileNotFoundError, OSError, DataError) as e:
        print(f"vict eval: error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or f"eval-{args.split}")
    reports = {}
    for engine in engines:
        reports[engine.name] = evaluate_model(
            engine,
            data,
            tasks=tasks,
            out_dir=out_dir,
            settings=settings,
            sentence=not args.no_sentence,
            caption_metrics=metrics,
            image_block=args.image_block,
            threads=args.threads,
        )
    json_path, md_path = write_report(reports, out_dir, title=f"Evaluation on {data.data} ({data.name})")
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}")
    return 0
