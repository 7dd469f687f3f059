"""The methods side by side: accuracy, training samples/s and inference answers/s of every row of one quickstart run.

    vict quickstart --out QS                  # trains the rows (the default preset has every method)
    python benchmarks/methods_speed.py --quickstart QS
    python benchmarks/methods_speed.py --quickstart QS --rows vict-lora,vict-vlora --steps 30 --repeats 3

For each row the run trained (``QS/report.json`` ``config.train``, ``QS/runs/<row>/final``):

- ``train``: the row's own training config (its method, connector, recipe, batch, the vision-feature cache in its
  steady state: every training image cached first, as after the first epoch) for ``--steps`` timed optimiser steps
  after ``--warmup`` untimed ones: samples/s;
- ``answer``: the trained checkpoint answers the first ``--questions`` GQA test questions without context (greedy,
  short answers, batches of ``--batch-size``, the image features computed once per image as ``vict eval`` does):
  answers/s;
- ``accuracy``: the run's own GQA-mini accuracy without context (``report.json``).

Rows are interleaved and repeated ``--repeats`` times (in a rotated order) and the median is kept, because a shared
CPU is noisy. The last lines are ratios against ``--base`` (VICT-LoRA by default), one ``name: ratio`` each.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_throughput.py: the same timed loop

from train_throughput import _measure
from vict.config import config_from_dict
from vict.eval.splits import load_eval_split
from vict.inference.engine import VictEngine
from vict.recipes.train import TrainRecipe


def train_recipe(cfg_dict: dict[str, Any], out: Path) -> TrainRecipe:
    """The row's training set up in ``out``, its vision-feature cache filled (steady state)."""
    cfg = copy.deepcopy(cfg_dict)
    cfg["train"].update({"output_dir": str(out), "eval_every": 0, "val_batches": 0, "save_every": 0})
    recipe = TrainRecipe(config_from_dict(cfg, source="methods_speed"))
    recipe.setup()
    cache = recipe.vision_cache
    if cache is not None:
        records = recipe.stream.records
        for i in range(0, len(records), 64):
            chunk = records[i : i + 64]
            cache.get([r.image_id for r in chunk], [(r.image_id, r.image_path) for r in chunk], "cpu")
    return recipe


def answers_per_s(engine: VictEngine, images: list[Path], questions: list[str]) -> tuple[float, float]:
    """``(answers/s, mean words per answer)`` of one pass over the questions (features cleared first)."""
    engine.release()
    start = time.perf_counter()
    answers = engine.answer(images, questions, style="short")
    elapsed = time.perf_counter() - start
    words = statistics.mean(len(a.answer.split()) for a in answers)
    return len(questions) / elapsed, words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quickstart", type=Path, required=True, help="a finished `vict quickstart --out` folder")
    parser.add_argument("--rows", default=None, help="comma-separated rows (default: every trained VICT row)")
    parser.add_argument("--base", default="vict-lora", help="the row the ratios divide by")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--questions", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the quickstart trains with 2)")
    args = parser.parse_args(argv)

    qs = args.quickstart
    report_file = qs / "report.json"
    if not report_file.is_file():
        raise SystemExit(f"--quickstart {qs}: no report.json; run `vict quickstart --out {qs}` first")
    report = json.loads(report_file.read_text())
    configs = report["config"]["train"]
    rows = args.rows.split(",") if args.rows else [r for r in configs if (qs / "runs" / r / "final").is_dir()]
    missing = [r for r in rows if r not in configs or not (qs / "runs" / r / "final").is_dir()]
    if missing or args.base not in rows:
        raise SystemExit(f"rows {missing or [args.base]} have no training config or final checkpoint in {qs}")
    torch.set_num_threads(args.threads)

    split = load_eval_split(qs / "world", "test", tasks=("gqa",))
    asked = split.questions[: args.questions]
    images = [split.images[q.image_index].path for q in asked]
    questions = [q.question for q in asked]

    tmp = Path(tempfile.mkdtemp(prefix="vict-methods-"))
    recipes = {row: train_recipe(configs[row], tmp / row) for row in rows}
    engines = {
        row: VictEngine.from_checkpoint(qs / "runs" / row / "final", batch_size=args.batch_size, name=row)
        for row in rows
    }
    train: dict[str, list[float]] = {row: [] for row in rows}
    answer: dict[str, list[float]] = {row: [] for row in rows}
    words: dict[str, float] = {}
    for repeat in range(args.repeats):
        for row in rows[repeat % len(rows) :] + rows[: repeat % len(rows)]:
            train[row].append(_measure(recipes[row], args.steps, args.warmup)[0])
            rate, words[row] = answers_per_s(engines[row], images, questions)
            answer[row].append(rate)
    for recipe in recipes.values():
        recipe.cleanup()

    med = {row: (statistics.median(train[row]), statistics.median(answer[row])) for row in rows}
    accuracy = {row: report["gqa"].get(row, {}).get("none") for row in rows}
    print(
        f"\nmethods side by side: {qs}, {args.steps} train steps x {args.repeats} repeats (median), "
        f"{len(questions)} GQA questions in batches of {args.batch_size}, torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'row':24} {'visual tok':>10} {'GQA none %':>10} {'train samples/s':>16} {'answers/s':>10} {'words/ans':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        tokens = engines[row].model.num_visual_tokens
        acc = "n/a" if accuracy[row] is None else f"{accuracy[row]:.2f}"
        print(f"{row:24} {tokens:10d} {acc:>10} {med[row][0]:16.1f} {med[row][1]:10.1f} {words[row]:9.2f}")
    base_train, base_answer = med[args.base]
    for row in rows:
        if row != args.base:
            print(f"train samples/s {row} / {args.base}: {med[row][0] / base_train:.2f}")
            print(f"answers/s {row} / {args.base}: {med[row][1] / base_answer:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
