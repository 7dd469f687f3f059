"""``vict eval`` speed: each saving switched off and on, side by side in one run, as ratios, with identical outputs.

    python benchmarks/eval_speed.py --data /tmp/ew --checkpoint /tmp/er/final
    python benchmarks/eval_speed.py --data QS/world --checkpoint QS/runs/vict-lora/final \\
        --blip2 QS/zoo/<hash>/blip2 --threads 1,2 --meteor

Generation variants (each runs the whole ``evaluate_model`` generation: captions, GQA ``none``/``caption``/``self``
short answers and, for VICT, sentence answers; scoring excluded):

- ``before``: the VPG (vision tower + Q-Former) runs for every prompt, batches of 8;
- ``batch32``: the same with batches of 32;
- ``reuse``: batches of 32 and each image's features computed once (the engines' ``FeatureCache``: a VICT model's
  Q-Former outputs, BLIP-2's projected Q-Former outputs);
- ``prefix``: ``reuse`` and, for VICT, each image's prompt prefix (BOS and its visual tokens) prefilled once and
  continued from by its caption and every question (``VictEngine(reuse_prefix=True)``), the default of ``vict eval``.

The last line, ``eval_prefix_vs_reuse: X``, is the whole generation's speed with prefix reuse against without
(``reuse``, the default before prefix reuse): ``vict eval`` must be no slower.

Every variant makes each image's own caption once (the engines' caption memory): the caption task and the ``self``
setting share it.

Every variant must give the same predictions as ``before`` (checked; a mismatch is printed and exits 1).

Scoring: PTB tokenisation as ``COCOEvalCap`` does it (two Java calls) against ``tokenize_pairs`` (one call), and
with ``--meteor`` METEOR with a fresh JVM per scored model (before) against the shared JVM already loaded
(``prewarm_meteor``, started while the models generate).

A shared CPU is noisy: variants are interleaved ``--repeats`` times and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from vict.eval.report import markdown_table
from vict.eval.splits import SETTINGS, load_eval_split
from vict.inference import VictEngine
from vict.inference.blip2 import Blip2Engine
from vict.recipes.evaluate import _run_generation

VARIANTS = {
    "before": (8, False, False),
    "batch32": (32, False, False),
    "reuse": (32, True, False),
    "prefix": (32, True, True),
}


class Timed:
    """An engine wrapper that adds up the seconds spent in each kind of call (captions, GQA by context)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.seconds, self.prompts = engine, defaultdict(float), 0
        self.name, self.kind, self.supports_sentence = engine.name, engine.kind, engine.supports_sentence

    def release(self) -> None:
        self.engine.release()

    def caption(self, images, progress=None):
        t = time.perf_counter()
        out = self.engine.caption(images)
        self.prompts += len(images)
        self.seconds["captions"] += time.perf_counter() - t
        return out

    def answer(self, images, questions, contexts, style="short", progress=None):
        t = time.perf_counter()
        out = self.engine.answer(images, questions, contexts, style)
        self.prompts += len(images)
        stage = "sentence" if style == "sentence" else f"gqa ({contexts[0].kind})"
        self.seconds[stage] += time.perf_counter() - t
        return out


def _engine(kind: str, model: Any, batch: int, reuse: bool, prefix: bool) -> Any:
    if kind == "vict":
        return VictEngine(
            model.model, model.builder, model.collator, batch, name="vict", reuse_features=reuse, reuse_prefix=prefix
        )
    return Blip2Engine(model, "blip2", batch_size=batch, reuse_features=reuse)


def bench_generation(models: dict[str, Any], data: Any, repeats: int, threads: list[int]) -> bool:
    ok = True
    for kind, model in models.items():
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            encoded: dict[str, int] = {}
            reference = None
            for _ in range(repeats):
                for variant, (batch, reuse, prefix) in VARIANTS.items():
                    engine = Timed(_engine(kind, model, batch, reuse, prefix))
                    t = time.perf_counter()
                    out = _run_generation(engine, data, ("caption", "gqa"), SETTINGS, kind == "vict", 256)
                    times[variant]["total"].append(time.perf_counter() - t)
                    for stage, s in engine.seconds.items():
                        times[variant][stage].append(s)
                    cache = engine.engine.cache
                    encoded[variant] = cache.encoded if cache is not None else engine.prompts
                    if reference is None:
                        reference = out
                    elif out != reference:
                        ok = False
                        print(f"MISMATCH: {kind} {variant} predictions differ from 'before'", file=sys.stderr)
            stages = list(times["before"])
            rows = []
            for stage in stages:
                base = statistics.median(times["before"][stage])
                cells = [stage]
                for variant in VARIANTS:
                    med = statistics.median(times[variant][stage])
                    cells.append(f"{med:.2f} s" + ("" if variant == "before" else f" ({base / med:.2f}x)"))
                rows.append(cells)
            rows.append(["images through the VPG", *(str(encoded[v]) for v in VARIANTS)])
            print(
                f"\n### generation, {kind}, {n_threads} thread(s), median of {repeats}; identical predictions: {ok}\n"
            )
            print(markdown_table(["stage", *VARIANTS], rows))
            if kind == "vict":
                ratio = statistics.median(times["reuse"]["total"]) / statistics.median(times["prefix"]["total"])
                print(f"\neval_prefix_vs_reuse: {ratio:.3f}")
    return ok


def bench_scoring(data: Any, repeats: int, meteor: bool) -> bool:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from vict.eval.captioning import _meteor_scorer, close_meteor, prewarm_meteor, tokenize_pairs
    from vict.eval.captioning import caption_references as refs_of

    refs = refs_of(data.captions)
    preds = {i: caps[-1] for i, caps in refs.items()}  # any text: the cost does not depend on it
    two, one = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in refs[i]] for i in refs})
        res = tok.tokenize({i: [{"caption": preds[i]}] for i in refs})
        two.append(time.perf_counter() - t)
        t = time.perf_counter()
        pair = tokenize_pairs(refs, preds)
        one.append(time.perf_counter() - t)
    same = pair == (gts, res)
    rows = [["PTB tokenizer (java)", f"{statistics.median(two):.2f} s", f"{statistics.median(one):.2f} s"]]
    rows[0].append(f"{statistics.median(two) / statistics.median(one):.2f}x")
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        t = time.perf_counter()
        cold = Meteor()
        first = cold.compute_score(gts, res)[0]
        cold_s = time.perf_counter() - t
        del cold
        close_meteor()
        prewarm_meteor()
        time.sleep(30)  # stands for the generation time the JVM load overlaps with in `vict eval`
        t = time.perf_counter()
        warm = _meteor_scorer().compute_score(gts, res)[0]
        warm_s = time.perf_counter() - t
        same = same and warm == first
        rows.append(["METEOR per scored model", f"{cold_s:.2f} s", f"{warm_s:.2f} s", f"{cold_s / warm_s:.1f}x"])
    print(f"\n### caption scoring, {len(refs)} images; identical tokens/scores: {same}\n")
    print(markdown_table(["stage", "before", "after", "speed-up"], rows))
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="world folder (vict data world)")
    parser.add_argument("--checkpoint", help="VICT checkpoint")
    parser.add_argument("--blip2", help="BLIP-2 directory (baseline path)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", default="1", help="comma-separated torch thread counts to compare")
    parser.add_argument("--meteor", action="store_true", help="also time METEOR cold vs shared JVM (~1 min)")
    args = parser.parse_args()
    from vict.eval.blip2_baseline import Blip2Baseline

    data = load_eval_split(Path(args.data), args.split, limit=args.limit)
    print(f"data: {args.data} ({args.split}): {len(data.images)} images, {len(data.questions)} questions")
    models: dict[str, Any] = {}
    if args.checkpoint:
        models["vict"] = VictEngine.from_checkpoint(args.checkpoint)
    if args.blip2:
        models["blip2"] = Blip2Baseline.from_pretrained(args.blip2)
    threads = [int(t) for t in args.threads.split(",")]
    ok = bench_generation(models, data, args.repeats, threads) if models else True
    ok = bench_scoring(data, args.repeats, args.meteor) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
