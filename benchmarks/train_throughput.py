"""Training throughput with each efficiency switch on and off, side by side, as ratios.

    python benchmarks/train_throughput.py                      # world config, a fresh 200-image world
    python benchmarks/train_throughput.py --steps 30 --repeats 3 --config configs/world/vict_llama_adapter.yaml

Switches (each turned off alone, then all off, against "all on"):

- ``logits_on_labelled_only``: the LM head runs only at target positions (``VisionLLM`` config flag) instead
  of producing ``(b, L, vocab)`` logits;
- ``group_by_length``: length-grouped batches (``vict.training.sampler``) instead of random ones;
- ``frozen_eval_no_grad``: frozen parts in eval mode and out of autograd (the model's default) versus what a
  naive loop does: everything in train mode (frozen dropout fires) and ``requires_grad=True`` on frozen
  weights (their gradients are computed, then ignored by the optimizer).

- ``vision_feature_cache`` (``train.cache_vision_features``, off by default): the features no trainable parameter
  changes (the frozen vision tower's output while the extra queries train) are computed once per image and reused;
  measured in its steady state (the cache is filled before timing, as it is after the first epoch of a run).

Each variant runs the recipe's real pipeline (PNG decode, image processor, collator, forward, backward, AdamW
step) for ``--steps`` timed steps after ``--warmup`` untimed ones; variants are interleaved (in a rotated order)
and repeated ``--repeats`` times and the median is reported, because a shared CPU is noisy. Throughput: samples/s and
non-pad tokens/s (attention-mask ones, visual slots included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn

from vict.config import load_config
from vict.recipes.train import TrainRecipe
from vict.training.sampler import BatchPlan

ROOT = Path(__file__).resolve().parents[1]
SWITCHES = ("logits_on_labelled_only", "group_by_length", "frozen_eval_no_grad", "vision_feature_cache")


def _set_switches(recipe: TrainRecipe, on: dict[str, bool], frozen: list[nn.Parameter], cache) -> None:
    model = recipe.model
    recipe.vision_cache = cache if on["vision_feature_cache"] else None
    model.config.logits_on_labelled_only = on["logits_on_labelled_only"]
    plan = recipe.plan
    recipe.plan = BatchPlan(
        num_examples=plan.num_examples,
        batch_size=plan.batch_size,
        world_size=plan.world_size,
        seed=plan.seed,
        group_by_length=on["group_by_length"],
        group_size=plan.group_size,
        length_of=plan.length_of,
    )
    efficient = on["frozen_eval_no_grad"]
    for p in frozen:
        p.requires_grad_(not efficient)
    if efficient:
        model.train = types.MethodType(type(model).train, model)  # the model's own: frozen parts stay in eval
    else:
        model.train = types.MethodType(nn.Module.train, model)  # naive: every submodule in train mode


def _measure(recipe: TrainRecipe, steps: int, warmup: int) -> tuple[float, float, float]:
    """``(samples/s, non-pad tokens/s, padding fraction)`` over ``steps`` timed optimizer steps."""
    model, optimizer = recipe.model, recipe.optimizer
    model.train()
    batches = recipe._batches(0)
    samples = tokens = cells = 0
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
            samples = tokens = cells = 0
        batch = next(batches)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for p in model.parameters():  # frozen weights that got gradients in the naive variant
            p.grad = None
        samples += batch["input_ids"].shape[0]
        tokens += int(batch["attention_mask"].sum())
        cells += batch["attention_mask"].numel()
    elapsed = time.perf_counter() - start
    return samples / elapsed, tokens / elapsed, 1.0 - tokens / cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/world/vict_lora.yaml"), help="training config")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides of the config")
    parser.add_argument("--world", type=Path, default=None, help="world dir (default: generate 200 images)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="vict-bench-"))
    world = args.world
    if world is None:
        from vict.data.world import generate_world

        world = tmp / "world"
        generate_world(world, images=200, seed=0)
    cfg = load_config(
        args.config,
        [f"data.world={world}", f"train.output_dir={tmp / 'run'}", "train.val_batches=0", *args.overrides],
    )
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    cfg.train.cache_vision_features = True
    recipe = TrainRecipe(cfg)
    recipe.setup()
    frozen = [p for p in recipe.model.parameters() if not p.requires_grad]
    cache = recipe.vision_cache
    records = recipe.stream.records
    for i in range(0, len(records), 64):  # steady state: every training image already cached
        chunk = records[i : i + 64]
        cache.get([r.image_id for r in chunk], [(r.image_id, r.image_path) for r in chunk], "cpu")

    all_on = dict.fromkeys(SWITCHES, True)
    variants = {"all on": all_on}
    for name in SWITCHES:
        variants[f"{name} off"] = {**all_on, name: False}
    variants["all off"] = dict.fromkeys(SWITCHES, False)

    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(args.repeats):
        # Rotate the order each repeat, so no variant always runs first (caches, CPU frequency, neighbours).
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            on = variants[name]
            _set_switches(recipe, on, frozen, cache)
            results[name].append(_measure(recipe, args.steps, args.warmup))
    _set_switches(recipe, all_on, frozen, cache)

    base_s = statistics.median(r[0] for r in results["all on"])
    base_t = statistics.median(r[1] for r in results["all on"])
    print(
        f"\ntrain throughput: {Path(args.config).name}, batch {cfg.train.batch_size}, {args.steps} steps x "
        f"{args.repeats} repeats (median), torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'variant':32} {'samples/s':>10} {'tokens/s':>10} {'pad %':>6} {'on/off samples':>15} {'on/off tokens':>14}"
    )
    print(header)
    print("-" * len(header))
    for name in variants:
        s = statistics.median(r[0] for r in results[name])
        t = statistics.median(r[1] for r in results[name])
        pad = statistics.median(r[2] for r in results[name])
        print(f"{name:32} {s:10.1f} {t:10.0f} {100 * pad:6.1f} {base_s / s:14.2f}x {base_t / t:13.2f}x")
    print("on/off: throughput with every switch on divided by the variant's (> 1: the switch helps)")
    recipe.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
