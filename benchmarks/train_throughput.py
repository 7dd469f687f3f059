"""Training throughput with each efficiency switch on and off, side by side, as ratios.

    python benchmarks/train_throughput.py                      # world config, a fresh 200-image world
    python benchmarks/train_throughput.py --steps 30 --repeats 3 --config configs/world/vict_llama_adapter.yaml
    python benchmarks/train_throughput.py --quick                              # the same lines in a few minutes

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

Utilisation, in the same process (helpers in ``benchmarks/_mfu.py``), at the process's torch thread count (the
config's ``train.num_threads`` or ``--threads``, set before anything is timed; the peak and both models share it):

- matmul peak: the best sustained float32 FLOP/s of ``torch.mm`` on square ``n x n`` matrices (``2 n³`` FLOPs;
  ``--peak-sizes``, default 512, 1024, 1536, 2048): per size two warm-up products, then timed ones for about
  ``--peak-seconds``, their median; the peak is the maximum over sizes. The sweep runs before the models and again
  after them, and the peak is the better of the two: a neighbour on a shared CPU can only lower a sweep (with 2
  threads on 2 shared cores, a matmul waits for a preempted thread), and a low peak would inflate the MFU.
- model FLOPs: counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` over the forward and backward
  of ``model(**batch).loss`` on real batches (matrix products, convolutions, attention kernels; with
  ``vict.models.flops.CPU_ATTENTION`` and the CPU attention kernel's backward, which it does not count by itself
  either). Norms, activations, softmax, dropout and the AdamW step are not matmuls and count 0. Model FLOP/s =
  counted FLOPs per step x steps/s measured with every switch on; MFU = model FLOP/s / matmul peak.
- miniature: the config's model (the "all on" variant above); its FLOPs are counted on the very batches the timed
  steps see (their mean per step). With the vision feature cache on, the frozen vision tower does not run in a
  step and is not counted.
- large: the benchmarks' larger random model (``vict.models.builders.build_bench``, ``BenchShapes``) with LoRA's
  default settings, float32, the model's defaults: frozen parts in eval mode without gradients, logits on labelled
  positions only): ViT 6 layers x 256 (MLP 1024, 8 heads, 224 px images in patches of 14: 257 tokens), Q-Former
  4 layers x 256 (MLP 1024, 8 heads, cross-attention in every layer), 32 original + 32 extra queries (64 visual
  tokens), LLaMA 6 layers x 512 (8 heads, SwiGLU MLP 1376, the 135-token built-in vocabulary); a synthetic batch
  of 16 random images and rows of 64 image slots + 48 random text tokens, the loss on the last 16; AdamW on the
  trainable parameters; ``--large-steps`` timed steps after ``--large-warmup``. Its plain loop (every switch off
  that applies: logits at every position, frozen parts in train mode with gradients) is timed as well
  (``--large-plain-steps``, 0 skips it). ``--large-shapes`` and ``--large-batch`` change the sizes (the test uses tiny
ones).

Machine-readable lines, each ``name: value``: ``train_vs_plain_loop`` (all-on / all-off samples/s, miniature),
``large_vs_plain_loop``, ``matmul_peak_gflops``, ``model_gflops_miniature``, ``model_gflops_large``,
``mfu_miniature``, ``mfu_large`` (fractions of the measured peak). ``--quick`` (an 80-image world, fewer steps,
repeats and peak time) prints the same lines in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _mfu.py beside this file

from _mfu import PEAK_SIZES, matmul_peak, step_flops, synthetic_batch
from vict.config import load_config
from vict.recipes.train import TrainRecipe
from vict.training.sampler import BatchPlan

ROOT = Path(__file__).resolve().parents[1]
SWITCHES = ("logits_on_labelled_only", "group_by_length", "frozen_eval_no_grad", "vision_feature_cache")
QUICK = {
    "images": 80,
    "steps": 5,
    "warmup": 1,
    "repeats": 1,
    "peak_seconds": 0.3,
    "large_steps": 3,
    "large_warmup": 1,
    "large_plain_steps": 1,
}
"""``--quick``: a smaller world, fewer steps and repeats, a shorter peak test; the same shapes and lines."""


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


def _measure(recipe: TrainRecipe, steps: int, warmup: int) -> tuple[float, float, float, float]:
    """``(samples/s, non-pad tokens/s, padding fraction, steps/s)`` over ``steps`` timed optimizer steps."""
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
    return samples / elapsed, tokens / elapsed, 1.0 - tokens / cells, steps / elapsed


def _miniature_step_flops(recipe: TrainRecipe, steps: int, warmup: int) -> float:
    """Mean counted FLOPs per step over the batches ``_measure`` times (the same positions of the same plan)."""
    recipe.model.train()
    batches = recipe._batches(0)
    for _ in range(warmup):
        next(batches)
    return statistics.mean(step_flops(recipe.model, next(batches)) for _ in range(steps))


def _set_large_plain(model: nn.Module, frozen: list[nn.Parameter], plain: bool) -> None:
    """The large model's switches that apply to a synthetic batch: all on (``plain=False``: the model's defaults)
    or all off (logits at every position; frozen parts in train mode and with gradients)."""
    model.config.logits_on_labelled_only = not plain
    for p in frozen:
        p.requires_grad_(plain)
    base = nn.Module if plain else type(model)
    model.train = types.MethodType(base.train, model)


def _time_large(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> float:
    """Optimizer steps per second on ``batch`` over ``steps`` timed steps after ``warmup`` untimed ones."""
    model.train()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for p in model.parameters():  # frozen weights that got gradients in the plain loop
            p.grad = None
    return steps / (time.perf_counter() - start)


def _large(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Build the large random model, count one step's FLOPs and time it, all on (and all off unless skipped)."""
    from vict.models.builders import BenchShapes, build_bench

    shapes = BenchShapes.parse(args.large_shapes)
    rows, tokens = (int(n) for n in args.large_batch.split("x"))
    model = build_bench("lora", shapes, seed=0)
    batch = synthetic_batch(model, (rows, tokens), seed=0)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    _set_large_plain(model, frozen, plain=False)
    model.train()
    out: dict[str, Any] = {"flops": float(step_flops(model, batch))}
    out["steps_per_s"] = _time_large(model, batch, optimizer, args.large_steps, args.large_warmup)
    if args.large_plain_steps:
        _set_large_plain(model, frozen, plain=True)
        out["plain_steps_per_s"] = _time_large(model, batch, optimizer, args.large_plain_steps, args.large_warmup)
        _set_large_plain(model, frozen, plain=False)
    out["shapes"] = f"{shapes}, batch {rows} x {tokens} text tokens"
    out["visual_tokens"] = model.num_visual_tokens
    out["trainable"] = model.trainable_parameters_by_part()["trainable"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/world/vict_lora.yaml"), help="training config")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides of the config")
    parser.add_argument("--world", type=Path, default=None, help="world dir (default: generate 200 images)")
    parser.add_argument("--quick", action="store_true", help="the same lines in a few minutes: " + str(QUICK))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=200, help="images of the generated world")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of the whole run (default: train.num_threads)"
    )
    parser.add_argument("--peak-sizes", default=",".join(map(str, PEAK_SIZES)), help="matmul peak: square sizes")
    parser.add_argument("--peak-seconds", type=float, default=1.0, help="matmul peak: timed seconds per size")
    parser.add_argument(
        "--large-shapes",
        default="",
        help="the large model (vict.models.builders.BenchShapes), e.g. vit=6x256,qformer=4x256,llm=6x512,"
        "queries=32+32,image=224x14",
    )
    parser.add_argument("--large-batch", default="16x48", help="the large model's batch: rows x text tokens")
    parser.add_argument("--large-steps", type=int, default=10, help="timed steps of the large model")
    parser.add_argument("--large-warmup", type=int, default=2)
    parser.add_argument("--large-plain-steps", type=int, default=5, help="timed steps of its plain loop (0: skip)")
    args = parser.parse_args(argv)
    if args.quick:  # the quick settings, unless given explicitly
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
        for key, value in QUICK.items():
            if "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)

    tmp = Path(tempfile.mkdtemp(prefix="vict-bench-"))
    world = args.world
    if world is None:
        from vict.data.world import generate_world

        world = tmp / "world"
        generate_world(world, images=args.images, seed=0)
    cfg = load_config(
        args.config,
        [f"data.world={world}", f"train.output_dir={tmp / 'run'}", "train.val_batches=0", *args.overrides]
        + ([f"train.num_threads={args.threads}"] if args.threads else []),
    )
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    peak_sizes = tuple(int(n) for n in args.peak_sizes.split(","))
    peaks = {"before": matmul_peak(peak_sizes, seconds=args.peak_seconds)}

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

    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(args.repeats):
        # Rotate the order each repeat, so no variant always runs first (caches, CPU frequency, neighbours).
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            on = variants[name]
            _set_switches(recipe, on, frozen, cache)
            results[name].append(_measure(recipe, args.steps, args.warmup))
    _set_switches(recipe, all_on, frozen, cache)
    miniature_flops = _miniature_step_flops(recipe, args.steps, args.warmup)

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
    plain_ratio = base_s / statistics.median(r[0] for r in results["all off"])
    miniature_steps = statistics.median(r[3] for r in results["all on"])
    recipe.cleanup()

    large = _large(args, tmp)

    mini_flops_s = miniature_flops * miniature_steps
    large_flops_s = large["flops"] * large["steps_per_s"]
    peaks["after"] = matmul_peak(peak_sizes, seconds=args.peak_seconds)
    peak = max(max(by_size.values()) for by_size in peaks.values())
    print(f"\nmatmul peak (float32 torch.mm, {torch.get_num_threads()} threads), median GFLOP/s by size:")
    for when, by_size in peaks.items():
        print(f"  {when} the models: " + ", ".join(f"{n}: {f / 1e9:.1f}" for n, f in by_size.items()))
    print(f"{'model':12} {'GFLOP/step':>11} {'steps/s':>8} {'GFLOP/s':>8} {'MFU':>6}")
    for name, flops, steps_s in (
        ("miniature", miniature_flops, miniature_steps),
        ("large", large["flops"], large["steps_per_s"]),
    ):
        print(
            f"{name:12} {flops / 1e9:11.3f} {steps_s:8.3f} {flops * steps_s / 1e9:8.2f} {flops * steps_s / peak:6.3f}"
        )
    print(
        f"large: {large['shapes']}; {large['visual_tokens']} visual tokens, {large['trainable']:,} trainable "
        f"parameters (LoRA defaults); {args.large_steps} timed steps after {args.large_warmup}"
    )
    print(f"train_vs_plain_loop: {plain_ratio:.3f}")
    if "plain_steps_per_s" in large:
        print(f"large_vs_plain_loop: {large['steps_per_s'] / large['plain_steps_per_s']:.3f}")
    print(f"matmul_peak_gflops: {peak / 1e9:.2f}")
    print(f"model_gflops_miniature: {mini_flops_s / 1e9:.4g}")
    print(f"model_gflops_large: {large_flops_s / 1e9:.4g}")
    print(f"mfu_miniature: {mini_flops_s / peak:.4g}")
    print(f"mfu_large: {large_flops_s / peak:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
