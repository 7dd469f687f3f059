"""``torch.compile`` and the attention kernel, measured: eager vs compiled and sdpa vs eager attention, as ratios.

    python benchmarks/compile_speed.py --quick                # 2 min on 2 idle CPU cores with a warm inductor
                                                              # cache (an earlier run), ~5 min cold
    python benchmarks/compile_speed.py --models large --steps 20 --repeats 3 --parts llm,vision,qformer

Models (random weights, LoRA on q_proj/v_proj, no dropout):

- ``tiny``: ``build_tiny("lora")`` (ViT 2x32 on 30 px, Q-Former 2x32 with 8 + 4 queries, LLaMA 2x32);
- ``large``: the benchmarks' larger random model (``vict.models.builders.build_bench``: ViT 6x256 on 224 px with
  patch 14, Q-Former 4x256 with 32 + 32 queries, LLaMA 6x512, 8 heads, FFN 1376), LoRA r=8, loaded like real
  checkpoints.

Variants, each its own model built from the same seed: ``eager`` (transformers' default attention, sdpa, no compile),
``compiled`` (``compile_model(model, parts)``, sdpa) and ``eager_attn`` (``set_attention(model, "eager")``, no compile).

- ``train``: ``VisionLLM.forward`` with labels (images through the ViT and Q-Former, the LLM), backward, AdamW step, on
  one fixed batch of ``--batch-size`` examples: samples/s over ``--steps`` steps after ``--warmup`` untimed ones.
- ``generate``: ``VictEngine(model).answer(images, questions)`` (collator, image processor, greedy KV-cached decoding
  of ``--new-tokens`` tokens; the feature cache dropped before every pass, so the vision tower runs): answers/s.

The compiled variant's first step / pass compiles (its time, minus one steady step, is printed as ``compile_s``);
it is never timed as throughput. Variants are interleaved (rotated) for ``--repeats`` repeats and the median kept, as
the CPU is shared and noisy. Before timing, each variant's greedy answers and first training loss are compared with
the ``eager`` variant's (``identical`` lines).

The last lines are one ``name: ratio`` each, ratio > 1 when the first named variant is faster:
``compile_train_<model>`` (compiled / eager samples/s), ``compile_generate_<model>``, ``sdpa_vs_eager_train_<model>``
(sdpa / eager attention), ``sdpa_vs_eager_generate_<model>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
from vict.inference.engine import VictEngine
from vict.models.builders import build_bench, build_tiny
from vict.models.compiled import PARTS, attention_of, compile_model, set_attention

VARIANTS = ("eager", "compiled", "eager_attn")
QUESTIONS = [
    "what color is the circle ?",
    "how many squares are there ?",
    "what shape is left of the star ?",
    "is there a red triangle ?",
    "what is in the middle ?",
    "which object is the largest ?",
    "what color is the background ?",
    "how many objects are there ?",
]
TARGETS = ["red", "two", "a small blue square", "yes", "a green star", "the big circle", "white", "five"]


# -------------------------------------------------------------------------------------------------- models
def model_factory(name: str, root: Path, device: str, dtype: str) -> Callable[[], Any]:
    """A function building a fresh model ``name`` (``tiny`` or ``large``) on ``device`` with its frozen parts in
    ``dtype``, the same weights every call."""
    if name == "tiny":
        return lambda: build_tiny("lora", num_extra_queries=4, seed=0, cache_dir=root / "tiny", frozen_dtype=dtype).to(
            device
        )
    if name == "large":
        lora = {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0}
        return lambda: build_bench(lora, frozen_dtype=dtype).to(device)
    raise SystemExit(f"--models: unknown model {name!r}; use tiny and/or large")


def variant(factory: Callable[[], Any], kind: str, parts: tuple[str, ...], mode: str | None) -> Any:
    model = factory()
    if kind == "compiled":
        compile_model(model, parts=parts, mode=mode)
    elif kind == "eager_attn":
        set_attention(model, "eager")
    return model


# ----------------------------------------------------------------------------------------------- workloads
def train_batch(model: Any, batch_size: int) -> dict[str, torch.Tensor]:
    """``[bos, slots, question, target, eos]`` rows, right padded, labels on the target and eos, random images."""
    tok = model.tokenizer
    rows, labs = [], []
    for i in range(batch_size):
        prompt = tok(QUESTIONS[i % len(QUESTIONS)], add_special_tokens=False)["input_ids"]
        target = [*tok(TARGETS[i % len(TARGETS)], add_special_tokens=False)["input_ids"], tok.eos_token_id]
        ids = [tok.bos_token_id, *([IMAGE_SLOT_ID] * model.num_visual_tokens), *prompt]
        rows.append(ids + target)
        labs.append([IGNORE_INDEX] * len(ids) + target)
    width = max(map(len, rows))
    size = model.vpg.image_size
    batch = {
        "pixel_values": torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)),
        "input_ids": torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labs]),
    }
    return {k: v.to(model.device) for k, v in batch.items()}


class Trainer:
    """One variant's training loop on a fixed batch: forward with labels, backward, AdamW."""

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.batch = train_batch(model, batch_size)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(self) -> float:
        self.model.train()
        loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        return float(loss.detach())

    def rate(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * self.batch["input_ids"].shape[0] / (time.perf_counter() - start)


class Answerer:
    """One variant's ``VictEngine`` answering ``questions`` about random images (features recomputed each pass)."""

    def __init__(self, model: Any, questions: int, batch_size: int, new_tokens: int) -> None:
        size = model.vpg.image_size
        gen = torch.Generator().manual_seed(1)
        self.images = [
            Image.fromarray((torch.rand(size, size, 3, generator=gen) * 255).to(torch.uint8).numpy())
            for _ in range(questions)
        ]
        self.questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
        self.engine = VictEngine(model, batch_size=batch_size, max_new_tokens=new_tokens)

    def answers(self) -> list[str]:
        self.engine.release()
        return [a.answer for a in self.engine.answer(self.images, self.questions, style="short")]

    def rate(self) -> float:
        start = time.perf_counter()
        self.answers()
        return len(self.questions) / (time.perf_counter() - start)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------- run
def run_model(name: str, factory: Callable[[], Any], args: argparse.Namespace) -> dict[str, float]:
    parts = tuple(args.parts.split(","))
    models = {kind: variant(factory, kind, parts, args.mode) for kind in VARIANTS}
    eager = models["eager"]
    n_params = sum(p.numel() for p in eager.parameters())
    print(
        f"\n[{name}] {n_params / 1e6:.1f}M parameters, {eager.num_visual_tokens} visual tokens, "
        f"compiled parts {parts} (mode {args.mode}), attention {attention_of(eager)['llm']} vs {attention_of(models['eager_attn'])['llm']}",
        flush=True,
    )
    answerers = {k: Answerer(m, args.questions, args.batch_size, args.new_tokens) for k, m in models.items()}
    trainers = {k: Trainer(m, args.batch_size) for k, m in models.items()}

    # First use: the compiled variant compiles here (generation graphs, then the training graph); outputs compared.
    first_answers, first_gen_s, first_loss, first_train_s = {}, {}, {}, {}
    for kind in VARIANTS:
        first_answers[kind], first_gen_s[kind] = timed(answerers[kind].answers)
        first_loss[kind], first_train_s[kind] = timed(trainers[kind].step)
    result: dict[str, float] = {}
    for kind in VARIANTS[1:]:
        same = first_answers[kind] == first_answers["eager"]
        loss_close = abs(first_loss[kind] - first_loss["eager"]) <= 1e-5 * max(1.0, abs(first_loss["eager"]))
        label = "compiled_vs_eager" if kind == "compiled" else "sdpa_vs_eager_attention"
        print(f"identical_answers_{label}_{name}: {same}")
        print(f"loss_allclose_{label}_{name}: {loss_close} ({first_loss['eager']:.6f} vs {first_loss[kind]:.6f})")
    for _ in range(max(0, args.warmup - 1)):
        for kind in VARIANTS:
            trainers[kind].step()

    train: dict[str, list[float]] = {k: [] for k in VARIANTS}
    generate: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for repeat in range(args.repeats):
        order = VARIANTS[repeat % len(VARIANTS) :] + VARIANTS[: repeat % len(VARIANTS)]
        for kind in order:
            generate[kind].append(answerers[kind].rate())
            train[kind].append(trainers[kind].rate(args.steps))
    med = {k: (statistics.median(train[k]), statistics.median(generate[k])) for k in VARIANTS}
    print(f"{'variant':12} {'train samples/s':>16} {'answers/s':>10}")
    for kind in VARIANTS:
        print(f"{kind:12} {med[kind][0]:16.2f} {med[kind][1]:10.2f}")
    steady_train = args.batch_size / med["compiled"][0]
    steady_gen = args.questions / med["compiled"][1]
    print(f"compile_s_train_{name}: {max(0.0, first_train_s['compiled'] - steady_train):.1f}")
    print(f"compile_s_generate_{name}: {max(0.0, first_gen_s['compiled'] - steady_gen):.1f}")
    result[f"compile_train_{name}"] = med["compiled"][0] / med["eager"][0]
    result[f"compile_generate_{name}"] = med["compiled"][1] / med["eager"][1]
    result[f"sdpa_vs_eager_train_{name}"] = med["eager"][0] / med["eager_attn"][0]
    result[f"sdpa_vs_eager_generate_{name}"] = med["eager"][1] / med["eager_attn"][1]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, questions and repeats (a few minutes)")
    parser.add_argument("--models", default="tiny,large", help="comma-separated: tiny, large")
    parser.add_argument("--parts", default="llm", help=f"comma-separated parts to compile, of {','.join(PARTS)}")
    parser.add_argument("--mode", default=None, help="torch.compile mode (default None; GPU: reduce-overhead)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps (the first one compiles)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=32, help="answers per generation pass")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=10, help="greedy tokens per answer (short answers: 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--dtype", default="float32", help="frozen parts' dtype: float32, bfloat16, float16")
    parser.add_argument(
        "--cold", action="store_true", help="a fresh inductor cache (compile times as on a first run on a machine)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats, args.questions, args.new_tokens = 3, 1, 3, 16, 6
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="vict-compile-"))
    if args.cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    print(
        f"compile_speed: torch {torch.__version__}, {args.device}, frozen {args.dtype}, {torch.get_num_threads()} "
        f"threads, batch {args.batch_size}, "
        f"{args.steps} steps x {args.repeats} repeats (median), {args.questions} answers of {args.new_tokens} tokens, "
        f"inductor cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR', 'default (warm after a first run)')}",
        flush=True,
    )
    ratios: dict[str, float] = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        ratios.update(run_model(name, model_factory(name, root, args.device, args.dtype), args))
        print(f"[{name}] {time.perf_counter() - start:.0f} s", flush=True)
    print()
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
