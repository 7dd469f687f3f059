"""``vict score``: score prediction files with the official caption, GQA, VQAv2 and ScienceQA rules.

Prints a table and, with ``--out``, writes the numbers as JSON (``scienceqa --json`` prints the JSON instead of the
tables). Exit code 2 on bad input, with a message naming the file, the record and the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vict.data.policy import DataError
from vict.data.scienceqa import load_scienceqa
from vict.eval.captioning import CAPTION_METRICS, FAST_CAPTION_METRICS, as_x100, score_captions
from vict.eval.gqa import RULES, SEMANTIC_NAMES, score_gqa
from vict.eval.predictions import ScoreError, load_json
from vict.eval.report import markdown_table, notes_lines, write_json
from vict.eval.scienceqa import CATEGORIES, FAILED_RULES, score_scienceqa
from vict.eval.vqa import score_vqav2

EPILOG = """examples:
  vict score caption --predictions results.json --annotations captions_test.json --out report.json
  vict score caption --predictions results.json --annotations captions_val2014.json --subset --fast
  vict score gqa --predictions preds.json --questions testdev_balanced_questions.json
  vict score gqa --predictions preds.json --questions testdev_balanced_questions.json --rule vqa
  vict score vqav2 --predictions results.json --annotations v2_mscoco_val2014_annotations.json \\
      --questions v2_OpenEnded_mscoco_val2014_questions.json --out vqa_report.json
  vict score scienceqa --predictions final_test_QCM-ALE.json --problems data/scienceqa/problems.json --split test
  vict score scienceqa --predictions llava_results.json --problems problems.json --failed wrong --json

formats:
  caption  predictions [{"image_id", "caption"}], annotations a COCO captions file
  gqa      predictions [{"questionId", "prediction"}], questions a GQA questions file
  vqav2    predictions [{"question_id", "answer"}], the official annotations and questions files
  scienceqa  predictions {"results": {pid: pred_idx}} or {pid: pred_idx} (0-based int or "A".."E"),
             problems.json + pid_splits.json (images are not needed)
Caption scores: the printed table is x100 (BLEU-4 43.8, CIDEr 127.0); --out holds pycocoevalcap's own numbers
(0-1: CIDEr 1.27). Accuracies are percentages.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``caption``, ``gqa``, ``vqav2`` and ``scienceqa`` sub-subcommands."""
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    cap = sub.add_parser("caption", help="BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE (pycocoevalcap)")
    cap.add_argument("--predictions", required=True, help='COCO results file [{"image_id", "caption"}]')
    cap.add_argument("--annotations", required=True, help="COCO captions file (images + annotations)")
    cap.add_argument("--subset", action="store_true", help="score only images that have a prediction")
    cap.add_argument("--fast", action="store_true", help="skip METEOR and SPICE (their JVMs take ~20 s to start)")
    cap.add_argument("--out", help="write the scores as JSON here")
    gqa = sub.add_parser("gqa", help="GQA accuracy by the official eval.py rule or with VQA normalisation")
    gqa.add_argument("--predictions", required=True, help='[{"questionId", "prediction"}]')
    gqa.add_argument("--questions", required=True, help="GQA questions file, e.g. testdev_balanced_questions.json")
    gqa.add_argument("--rule", choices=RULES, default="official", help="official: exact equality (default)")
    gqa.add_argument("--all-questions", action="store_true", help="score unbalanced questions too")
    gqa.add_argument("--out", help="write the scores as JSON here")
    vqa = sub.add_parser("vqav2", help="official VQA v2 accuracy (leave-one-out min(k/3, 1))")
    vqa.add_argument("--predictions", required=True, help='[{"question_id", "answer"}]')
    vqa.add_argument("--annotations", required=True, help="v2_mscoco_*_annotations.json")
    vqa.add_argument("--questions", help="v2_OpenEnded_mscoco_*_questions.json (checked against the annotations)")
    vqa.add_argument("--out", help="write the scores as JSON here")
    sqa = sub.add_parser("scienceqa", help="official ScienceQA accuracies: NAT SOC LAN TXT IMG NO G1-6 G7-12 Average")
    sqa.add_argument("--predictions", required=True, help='{"results": {pid: pred_idx}} or {pid: pred_idx}')
    sqa.add_argument("--problems", required=True, help="ScienceQA problems.json")
    sqa.add_argument("--pid-splits", help="pid_splits.json (default: the one beside problems.json)")
    sqa.add_argument("--split", default="test", help="a key of pid_splits.json (default: test)")
    sqa.add_argument(
        "--failed",
        choices=FAILED_RULES,
        default="random",
        help="a failed or invalid answer: random = a seeded random choice (the reference, default); "
        "wrong = counted wrong (LLaVA's -1)",
    )
    sqa.add_argument("--seed", type=int, default=0, help="seed of --failed random (default: 0)")
    sqa.add_argument("--allow-missing", action="store_true", help="count problems without a prediction as failed")
    sqa.add_argument("--json", action="store_true", help="print the whole report (with per-topic counts) as JSON")
    sqa.add_argument("--out", help="write the scores as JSON here")


def caption_summary(result: dict[str, Any]) -> str:
    """The printed table of a caption report."""
    shown = as_x100(result)
    table = markdown_table(["metric", "score (x100)"], [[m, shown[m]] for m in CAPTION_METRICS])
    notes = notes_lines(result.get("notes", {}))
    return "\n".join([f"captions scored: {result['n']}", table, *notes])


def gqa_summary(result: dict[str, Any]) -> str:
    """The printed table of a GQA report."""
    rows = [["overall", result["accuracy"], result["n"]]]
    rows += [["binary", result["binary"], ""], ["open", result["open"], ""]]
    rows += [[f"structural: {k}", v, ""] for k, v in result["by_structural"].items()]
    rows += [[f"semantic: {SEMANTIC_NAMES.get(k, k)}", v, ""] for k, v in result["by_semantic"].items()]
    return f"GQA accuracy (rule: {result['rule']})\n" + markdown_table(["subset", "accuracy %", "n"], rows)


def vqa_summary(result: dict[str, Any]) -> str:
    """The printed table of a VQAv2 report."""
    rows = [["overall", result["overall"]]] + [[f"answer type: {k}", v] for k, v in result["per_answer_type"].items()]
    return f"VQAv2 accuracy over {result['n']} questions\n" + markdown_table(["subset", "accuracy %"], rows)


def scienceqa_summary(result: dict[str, Any]) -> str:
    """The printed tables of a ScienceQA report: the official categories, then accuracy per topic."""
    head = (
        f"ScienceQA accuracy, split {result['split']} ({result['n']} problems; {result['failed']} failed answers "
        f"scored by rule '{result['failed_rule']}'"
        + (f", seed {result['seed']}" if result["failed_rule"] == "random" else "")
        + ")"
    )
    cats = result["categories"]
    rows = [[c, cats[c]["accuracy"], cats[c]["correct"], cats[c]["count"]] for c in CATEGORIES]
    topics = [[t, v["accuracy"], v["correct"], v["count"]] for t, v in result["by_topic"].items()]
    header = ["correct", "n"]
    return "\n".join(
        [
            head,
            markdown_table(["category", "accuracy %", *header], rows),
            "",
            markdown_table(["topic", "accuracy %", *header], topics),
        ]
    )


def _score_scienceqa(args: argparse.Namespace) -> dict[str, Any]:
    predictions = load_json(args.predictions, "ScienceQA predictions")
    pid_splits = args.pid_splits or Path(args.problems).with_name("pid_splits.json")
    try:
        problems = load_scienceqa(args.problems, pid_splits, split=args.split, check_images=False)
    except DataError as e:
        raise ScoreError(f"ScienceQA problems: {e}") from e
    result = score_scienceqa(
        predictions,
        problems,
        failed=args.failed,
        seed=args.seed,
        allow_missing=args.allow_missing,
        what=f"ScienceQA predictions {args.predictions}",
    )
    return {"split": args.split, **result}


def run(args: argparse.Namespace) -> int:
    """Score, print the table, optionally write JSON. Returns 0, or 2 on bad input."""
    try:
        if args.task == "caption":
            result = score_captions(
                load_json(args.predictions, "caption predictions"),
                load_json(args.annotations, "caption annotations"),
                metrics=FAST_CAPTION_METRICS if args.fast else None,
                restrict_to_predictions=args.subset,
            )
            text = caption_summary(result)
        elif args.task == "gqa":
            result = score_gqa(
                load_json(args.predictions, "GQA predictions"),
                load_json(args.questions, "GQA questions"),
                rule=args.rule,
                balanced_only=not args.all_questions,
            )
            text = gqa_summary(result)
        elif args.task == "scienceqa":
            result = _score_scienceqa(args)
            text = json.dumps(result, indent=2) if args.json else scienceqa_summary(result)
        else:
            questions = load_json(args.questions, "VQA questions") if args.questions else None
            result = score_vqav2(
                load_json(args.predictions, "VQA predictions"),
                load_json(args.annotations, "VQA annotations"),
                questions,
            )
            text = vqa_summary(result)
    except ScoreError as e:
        print(f"vict score {args.task}: error: {e}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        # With --json, stdout holds only the JSON.
        print(f"wrote {write_json(args.out, result)}", file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return 0
