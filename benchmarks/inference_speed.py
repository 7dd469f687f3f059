"""Answering speed side by side, as ratios: prefix reuse, the feature cache, batching.

    python benchmarks/inference_speed.py                         # shipped miniature + the larger random model
    python benchmarks/inference_speed.py --quick                 # the same lines in under 3 minutes
    python benchmarks/inference_speed.py --checkpoint QS/runs/vict-lora/final   # a trained miniature row

Three comparisons, each on fresh engines (empty caches) and the same inputs:

- ``self_reuse_vs_naive``: ``self`` mode (the model captions each image, then answers with its caption), one question
  per image. Naive: every pass runs the VPG and prefills its whole prompt (``reuse_features=False,
  reuse_prefix=False``); reuse: each image's features and its prefix's key/value cache (BOS and the visual tokens
  with these templates) computed once, shared by its caption and answer passes (the engine's defaults).
- ``prefix_reuse_6q``: six questions per image, as ``vict eval`` asks them (no context, a given caption, a given
  question-answer pair, twice each), the features cached in both; with prefix reuse against without.
- ``batch16_vs_batch1``: answers/s with 16 prompts per ``generate`` call against one at a time (engine defaults
  otherwise), and ``batched_outputs_identical``: the fraction of answers that are the same text both ways.

Models: ``miniature``, the shipped zoo's BLIP-2 and target LLaMA with VICT-LoRA (``--checkpoint``: a trained row,
whose answers stop where the model says; without it a fresh LoRA, which answers as the frozen LM does) and the
miniature's prompt templates, on a generated world's images; ``large``, random weights at larger shapes
(``vict.models.builders.build_bench``: ViT 6 x 256 at 224 px, Q-Former 4 x 256 with 32 + 32 queries, LLaMA 6 x 512),
which never ends a text by itself, so its captions and answers are given the lengths a trained model's have
(``--large-caption-tokens`` 16, ``--large-answer-tokens`` 3: a word or two and the end of text). Each variant runs
``--repeats`` times after an untimed warm-up run, interleaved in rotated order, and the median is kept (a shared
CPU is noisy). The last lines
are one ``name: ratio`` each; the plain names are the miniature's, ``_large`` the larger model's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vict.inference import Context, VictEngine

ROOT = Path(__file__).resolve().parents[1]
CONTEXTS_6Q = ("none", "caption", "qa")
QUESTIONS = (
    "what color is the circle?",
    "how many shapes are there?",
    "is there a square?",
    "what shape is left of the triangle?",
    "what size is the red shape?",
    "where is the blue shape?",
)


def miniature_engine_factory(checkpoint: str | None) -> Callable[..., VictEngine]:
    """Engines of the miniature: a trained checkpoint, or the shipped zoo with a fresh VICT-LoRA."""
    if checkpoint:
        model = VictEngine.from_checkpoint(checkpoint).model
        template_engine = VictEngine.from_checkpoint(checkpoint)
        builder, collator = template_engine.builder, template_engine.collator
    else:
        from vict.data.prompts import InstructionBuilder, load_templates
        from vict.inference.engine import make_collator
        from vict.models.builders import build_vision_llm
        from vict.zoo.shipped import shipped_zoo

        zoo = shipped_zoo("default", check=False)
        model = build_vision_llm(zoo.blip2_dir, zoo.target_lm_dir, method="lora", num_extra_queries=8)
        templates = ROOT / "src" / "vict" / "data" / "templates" / "miniature.yaml"
        builder, collator = InstructionBuilder(templates=load_templates(templates)), make_collator(model)
    model.eval()

    def make(**kwargs: Any) -> VictEngine:
        return VictEngine(model, builder=builder, collator=collator, **kwargs)

    return make


class FixedBudgets(VictEngine):
    """An engine whose captions and answers always take ``caption_tokens`` / ``answer_tokens`` (a random model never
    ends a text by itself)."""

    def __init__(self, model: Any, caption_tokens: int, answer_tokens: int, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.budgets = {"caption": caption_tokens, "short": answer_tokens, "sentence": answer_tokens}

    def _budget(self, kind: str, max_new_tokens: int | None) -> int:
        return max_new_tokens or self.budgets[kind]


def large_engine_factory(caption_tokens: int, answer_tokens: int) -> Callable[..., VictEngine]:
    """Engines of the larger random model (``vict.models.builders.build_bench``, VICT-LoRA r 8)."""
    from vict.models.builders import build_bench

    model = build_bench({"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0})
    model.eval()

    def make(**kwargs: Any) -> VictEngine:
        return FixedBudgets(model, caption_tokens, answer_tokens, **kwargs)

    return make


def world_images(n: int, folder: Path) -> list[Path]:
    from vict.data.world import generate_world

    generate_world(folder, images=max(n, 8), seed=0)
    return sorted((folder / "images").glob("*.png"))[:n]


def timed(run: Callable[[], list[str]]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def compare(variants: dict[str, Callable[[], list[str]]], repeats: int) -> dict[str, tuple[float, list[str]]]:
    """``{name: (median seconds, outputs of the last run)}``: one untimed warm-up run of each variant (first calls
    pay for kernel selection and allocator growth), then ``repeats`` timed ones, interleaved in a rotated order."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, list[str]] = {}
    names = list(variants)
    for name in names:
        variants[name]()
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            took, outputs[name] = timed(variants[name])
            seconds[name].append(took)
    return {name: (statistics.median(seconds[name]), outputs[name]) for name in names}


def texts(answers: list[Any]) -> list[str]:
    return [f"{a.caption}|{a.answer}" for a in answers]


def measure(make: Callable[..., VictEngine], images: list[Path], repeats: int) -> dict[str, float]:
    """The three comparisons on one model; returns the ratios and the answers/s behind them."""
    n = len(images)
    questions = [QUESTIONS[k % len(QUESTIONS)] for k in range(n)]

    def self_mode(**kwargs: Any) -> Callable[[], list[str]]:
        return lambda: texts(make(**kwargs).answer(images, questions, Context.own_caption()))

    selfs = compare({"naive": self_mode(reuse_features=False, reuse_prefix=False), "reuse": self_mode()}, repeats)
    assert selfs["naive"][1] == selfs["reuse"][1], "self mode: reuse changed an answer"

    six_images = [im for im in images for _ in range(6)]
    six_questions = [QUESTIONS[k] for _ in images for k in range(6)]
    six_contexts = [
        {
            "none": Context.none(),
            "caption": Context.given_caption("a red circle and a blue square"),
            "qa": Context.given_qa("what color is the square?", "blue"),
        }[CONTEXTS_6Q[k % 3]]
        for _ in images
        for k in range(6)
    ]

    def six(**kwargs: Any) -> Callable[[], list[str]]:
        return lambda: texts(make(**kwargs).answer(six_images, six_questions, six_contexts))

    sixes = compare({"whole": six(reuse_prefix=False), "reuse": six()}, repeats)
    assert sixes["whole"][1] == sixes["reuse"][1], "six questions: prefix reuse changed an answer"

    def batched(size: int) -> Callable[[], list[str]]:
        return lambda: texts(make(batch_size=size).answer(six_images[: 2 * n], six_questions[: 2 * n]))

    batches = compare({"batch 1": batched(1), "batch 16": batched(16)}, repeats)
    one, sixteen = batches["batch 1"][1], batches["batch 16"][1]
    return {
        "self_reuse_vs_naive": selfs["naive"][0] / selfs["reuse"][0],
        "prefix_reuse_6q": sixes["whole"][0] / sixes["reuse"][0],
        "batch16_vs_batch1": batches["batch 1"][0] / batches["batch 16"][0],
        "batched_outputs_identical": sum(a == b for a, b in zip(one, sixteen)) / len(one),
        "self_answers_per_s_naive": n / selfs["naive"][0],
        "self_answers_per_s_reuse": n / selfs["reuse"][0],
        "6q_answers_per_s_whole": 6 * n / sixes["whole"][0],
        "6q_answers_per_s_reuse": 6 * n / sixes["reuse"][0],
        "answers_per_s_batch1": 2 * n / batches["batch 1"][0],
        "answers_per_s_batch16": 2 * n / batches["batch 16"][0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a trained miniature VICT checkpoint (default: the zoo, fresh LoRA)")
    parser.add_argument("--images", type=int, default=16, help="images per comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-caption-tokens", type=int, default=16, help="caption length of the large model")
    parser.add_argument("--large-answer-tokens", type=int, default=3, help="short-answer length of the large model")
    parser.add_argument("--no-large", action="store_true", help="skip the larger random model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="8 images, 1 repeat (under 3 minutes on 2 cores)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats = min(args.images, 8), 1

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = world_images(args.images, Path(tempfile.mkdtemp(prefix="vict-infer-")) / "world")
    models = {"miniature": miniature_engine_factory(args.checkpoint)}
    if not args.no_large:
        models["large"] = large_engine_factory(args.large_caption_tokens, args.large_answer_tokens)
    results = {name: measure(make, images, args.repeats) for name, make in models.items()}

    print(
        f"\ninference speed: {args.images} images, median of {args.repeats}, torch threads {torch.get_num_threads()}"
    )
    names = list(next(iter(results.values())))
    print(f"{'measure':28}" + "".join(f"{m:>12}" for m in results))
    for name in names:
        print(f"{name:28}" + "".join(f"{r[name]:12.3f}" for r in results.values()))
    print()
    for model, rows in results.items():
        suffix = "" if model == "miniature" else f"_{model}"
        for name in ("self_reuse_vs_naive", "prefix_reuse_6q", "batch16_vs_batch1", "batched_outputs_identical"):
            print(f"{name}{suffix}: {rows[name]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
