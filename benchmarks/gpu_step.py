"""GPU step benchmark: every method's training step and the answering engine at the paper's shapes, random weights.

    python benchmarks/gpu_step.py                     # the whole matrix on the first CUDA device (< 8 min on one H200)
    python benchmarks/gpu_step.py --quick             # 1 warm-up + 3 timed steps per method, 4 images: a smoke run
    python benchmarks/gpu_step.py --methods lora,vlora --batch-size 16 --steps 20 --max-seconds 300
    python benchmarks/gpu_step.py --device cpu --shapes tiny --steps 1 --warmup 0   # the same code, tiny shapes

Without a CUDA device (and without ``--device cpu``) it prints one line, ``gpu_step: skipped: no CUDA device ...``,
and exits 0.

What is built: per method, the paper's model with random weights: the VPG of ``Salesforce/blip2-opt-2.7b`` (EVA ViT-g/14
at 224 px, 39 x 1408, + BERT-base Q-Former, ``vict.models.builders.paper_blip2_config``) and LLaMA-7B
(``llama_7b_config``), composed by ``VisionLLM.compose`` as ``paper_footprint`` (``vict inspect paper``) does, but
under ``torch.device("cuda")`` instead of the meta device: every weight is created and initialised (transformers'
own initialisers) directly on the GPU, the LLM in the frozen dtype (``--frozen-dtype``, bf16 by default), the vision
tower built in fp32 there and cast to it, the Q-Former and every trainable tensor in fp32 (as ``VisionLLM`` keeps
them). Nothing is read from disk or downloaded; the tokenizer is the built-in word-level one (prompt lengths are the
templates' in its words), padded out with made-up words to LLaMA's 32,000 ids. Method settings are those of ``configs/llama7b/*.yaml``; ``vpgtrans`` and ``vpgtrans_lora`` are two-stage recipes and
their ``joint`` stage (the longer one, their default ``stage``) is timed.

What is measured:

- ``peak_tflops_measured``: the GPU's peak, measured in this process: ``--mm-size``² ``torch.mm`` in the frozen dtype
  (8192² bf16 on CUDA; random operands), the median of ``--mm-repeats`` timed groups of 10;
- per method, training: batches of ``--batch-size`` rows of [bos, the visual tokens, ``--text-tokens`` - 1 random text
  tokens] with the last ``--target-tokens`` text tokens labelled, random pixels (the vision tower runs every step: no
  feature cache), ``VisionLLM.forward`` (loss) + backward + ``torch.optim.AdamW`` on the trainable parameters;
  ``--warmup`` untimed steps, then ``--steps`` timed ones (CUDA synchronised): samples/s and ms/step;
  ``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` from the built model (its weights in place) to the last
  timed step (weights, gradients, AdamW state, activations);
  ``step_tflop``: one forward + backward counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products and attention kernels, forward and backward, fp32 Q-Former included; on the CPU with the
  ``vict.models.flops.CPU_ATTENTION`` mapping and its backward); as a cross-check,
  ``llm_fwd_formula_tflop`` is one forward of the batch through the LLM by ``vict.models.flops``' formula (a step
  counts about twice that plus the VPG: the frozen weights get no weight gradients, the activations do);
  ``mfu``: ``step_tflop`` x steps/s / ``peak_tflops_measured``;
- inference (the ``--infer-method`` model, after its training steps): ``VictEngine`` answers 6 short questions about
  each of ``--infer-images`` random images (image-major order, batches of ``--infer-batch``, features cached per image)
  with a fixed budget of ``--new-tokens`` new tokens per answer (random weights practically never emit eos; the
  generation config's ``min_new_tokens`` is also set to the budget); answers/s with and without prefix reuse
  (``VictEngine(reuse_prefix=True/False)``); ``prefix_reuse_6q`` is their ratio. Each variant answers a warm-up set first, then the median of
  ``--infer-repeats`` timed passes.

``--max-seconds`` bounds the whole run (default 420): a method is skipped when the slowest one so far would not fit in
what is left, and a timed loop stops early at the deadline (after at least one step). Memory is freed between methods.
A method that fails (e.g. out of memory) is reported and the others still run; the exit status is then 1.

Output: a header (device, torch, dtype), a table, then machine-readable ``name: value`` lines (numbers, except
``device``, ``torch``, ``dtype``, ``shapes``): ``peak_tflops_measured``; per method ``train_samples_per_s_<method>``,
``train_step_ms_<method>``, ``peak_memory_gib_<method>``, ``step_tflop_<method>``, ``mfu_<method>`` (a fraction),
``trainable_params_<method>``, ``visual_tokens_<method>``, ``loss_<method>``, ``llm_fwd_formula_tflop_<method>``; then
``answers_per_s_no_reuse``, ``answers_per_s_reuse``, ``prefix_reuse_6q``, ``reuse_answers_match`` (the fraction of
answers identical with and without reuse: greedy decoding should give 1) and ``elapsed_s``. Prose lines start with
``gpu_step:``. On the CPU (``--device cpu --shapes tiny``, for tests) peak memory is not measured (``nan``).
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from vict.models.flops import CPU_ATTENTION

QUESTIONS: tuple[str, ...] = (
    "what color is the circle ?",
    "how many objects are there ?",
    "what shape is on the left ?",
    "is there a red square ?",
    "what size is the star ?",
    "where is the triangle ?",
)
"""The 6 questions asked about every image (words of the built-in tokenizer)."""

LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}


class Case(NamedTuple):
    """One row of the matrix: a method with its settings, its connector and its extra queries."""

    method: dict[str, Any]
    connector: dict[str, Any] | None
    num_extra_queries: int
    note: str = ""


PAPER_CASES: dict[str, Case] = {
    "lora": Case({"type": "lora", **LORA}, None, 32),
    "llama_adapter": Case({"type": "llama_adapter", "adapter_len": 10, "adapter_layers": 30}, None, 32),
    "vpgtrans": Case(
        {"type": "vpgtrans", "stage": "joint", "tune_ln_vision": True},
        None,
        0,
        "joint stage: Q-Former, queries, ln_vision, projector",
    ),
    "vpgtrans_lora": Case({"type": "vpgtrans_lora", "stage": "joint", **LORA}, None, 32, "joint stage"),
    "mm_adapter": Case(
        {"type": "mm_adapter", "dim": 8, "groups": 2, "dropout": 0.1, "temperature": 10.0, "position": "attn"},
        {"type": "lavin_cls", "every": 4, "hidden": 128},
        0,
        "connector lavin_cls",
    ),
    "vlora": Case(
        {"type": "vlora", "rank": 64, "alpha": 64.0, "every": 4, "weight_types": ["q", "k", "v", "o", "m"]},
        {"type": "vlora_generator", "width": 512, "depth": 8, "heads": 8},
        32,
        "connector vlora_generator",
    ),
}
"""The paper-shaped matrix (settings of ``configs/llama7b/*.yaml``)."""

METHODS: tuple[str, ...] = tuple(PAPER_CASES)


def tiny_case(name: str) -> Case:
    """The tiny-shaped row of ``name``: ``build_tiny``'s settings (2-layer LLaMA, 2-layer ViT)."""
    from vict.models.builders import TINY_CONNECTOR_SETTINGS, TINY_METHOD_SETTINGS

    paper = PAPER_CASES[name]
    kind = paper.method["type"]
    method = {"type": kind, **TINY_METHOD_SETTINGS.get(kind, {})}
    if "stage" in paper.method:
        method["stage"] = paper.method["stage"]
    connector = None
    if paper.connector is not None:
        ctype = paper.connector["type"]
        connector = {"type": ctype, **TINY_CONNECTOR_SETTINGS.get(ctype, {})}
        if ctype == "lavin_cls":  # the tiny tower has 2 blocks: every block's [CLS]
            connector.update(every=1, hidden=16)
    return Case(method, connector, 4 if paper.num_extra_queries else 0, paper.note)


# ------------------------------------------------------------------------------------------------------ helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def measure_peak_flops(device: torch.device, dtype: torch.dtype, size: int, repeats: int, inner: int = 10) -> float:
    """FLOP/s of ``size``² x ``size``² ``torch.mm`` in ``dtype``: the median of ``repeats`` timed groups of ``inner``."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    out = torch.empty(size, size, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        sync(device)
        times.append(time.perf_counter() - start)
    del a, b, out
    return 2.0 * size**3 * inner / statistics.median(times)


# --------------------------------------------------------------------------------------------------- building
def make_tokenizer(shapes: str) -> Any:
    """The built-in word-level tokenizer; for the paper's shapes padded out with made-up words (``w0``, ``w1``, ...)
    to LLaMA's 32,000 ids, so every id the random LLM emits decodes to a word (answers compare exactly)."""
    from vict.models.builders import llama_7b_config
    from vict.models.tokenizer import BUILTIN_WORDS, builtin_tokenizer, train_tokenizer

    if shapes != "paper":
        return builtin_tokenizer(padding_side="left")
    vocab = llama_7b_config().vocab_size
    words = " ".join(BUILTIN_WORDS)  # twice: the real words rank before the made-up ones
    filler = " ".join(f"w{i}" for i in range(vocab))
    return train_tokenizer([words, words, filler], vocab_size=vocab, padding_side="left")


def build_model(case: Case, shapes: str, device: torch.device, frozen_dtype: str, tokenizer: Any, seed: int = 0):
    """A ``VisionLLM`` with random weights of ``shapes`` (``paper`` or ``tiny``), created directly on ``device``.

    The same composition as ``vict.models.builders.paper_footprint`` (which builds on the meta device to count),
    under ``torch.device(device)``: every tensor is allocated and initialised where it lives, the LLM in
    ``frozen_dtype`` from the start (LLaMA-7B never exists in fp32 or on the CPU); the vision tower is cast to
    ``frozen_dtype``, the Q-Former stays fp32 and ``VisionLLM`` casts the trainable parts to fp32.
    """
    from transformers import AutoModelForCausalLM

    from vict.models.builders import (
        PAPER_LLM_SOURCE,
        PAPER_VPG_SOURCE,
        connector_spec,
        llama_7b_config,
        method_spec,
        paper_blip2_config,
        tiny_blip2_config,
        tiny_llama_config,
    )
    from vict.models.vision_llm import DTYPES, VisionLLM, VisionLLMConfig
    from vict.models.vpg import VisualPromptGenerator, VPGSpec

    dtype = DTYPES[frozen_dtype]
    if shapes == "paper":
        blip2, llm_config = paper_blip2_config(), llama_7b_config()
        sources = (f"random:{PAPER_VPG_SOURCE}", f"random:{PAPER_LLM_SOURCE}")
    else:
        blip2, llm_config = tiny_blip2_config(), tiny_llama_config(len(tokenizer))
        sources = ("random:tiny-blip2", "random:tiny-llama")
    config = VisionLLMConfig(
        vpg_source=sources[0],
        llm_source=sources[1],
        num_extra_queries=case.num_extra_queries,
        method=method_spec(dict(case.method)),
        connector=connector_spec(None if case.connector is None else dict(case.connector)),
        frozen_dtype=frozen_dtype,
        seed=seed,
    )
    torch.manual_seed(seed)
    n_extra = case.num_extra_queries
    with torch.device(device):
        # VisualPromptGenerator.from_config minus its init_extra_queries, which draws from a CPU generator (a factory
        # call that the device context would send to the GPU with a CPU generator): that runs below, outside.
        vpg = VisualPromptGenerator(
            blip2.vision_config,
            blip2.qformer_config,
            blip2.num_query_tokens,
            n_extra,
            spec=VPGSpec("<config>", "config", n_extra, blip2_config=blip2.to_dict()),
        )
        vpg.vision_model.to(dtype)
    vpg.init_extra_queries(seed)  # drawn on the CPU (a few thousand numbers), copied into place
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(llm_config, dtype=dtype)
        model = VisionLLM.compose(vpg, llm, tokenizer, config)
    if any(t.device.type != device.type for t in (*model.parameters(), *model.buffers())):
        model.to(device)  # a part some library built elsewhere (not expected; a no-op for what is in place)
    return model


def make_batch(model: Any, batch_size: int, text_tokens: int, target_tokens: int, seed: int = 0) -> dict[str, Any]:
    """A training batch: rows of [bos, visual-token slots, ``text_tokens`` - 1 random ids], the last
    ``target_tokens`` labelled, random pixels; on the model's device."""
    from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
    from vict.models.tokenizer import SPECIAL_TOKENS

    gen = torch.Generator().manual_seed(seed)
    tok = model.tokenizer
    text = torch.randint(len(SPECIAL_TOKENS), len(tok), (batch_size, text_tokens), generator=gen)
    text[:, 0] = tok.bos_token_id
    slots = torch.full((batch_size, model.num_visual_tokens), IMAGE_SLOT_ID, dtype=text.dtype)
    input_ids = torch.cat([text[:, :1], slots, text[:, 1:]], dim=1)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, -target_tokens:] = input_ids[:, -target_tokens:]
    size = model.vpg.image_size
    pixel_values = torch.randn(batch_size, 3, size, size, generator=gen)
    batch = {
        "pixel_values": pixel_values,
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }
    return {k: v.to(model.device) for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------- training
def bench_train(model: Any, batch: dict[str, Any], args: argparse.Namespace, deadline: float) -> dict[str, float]:
    """Warm-up, one counted forward + backward, then timed AdamW steps: the method's training figures."""
    device = model.device
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)

    def step() -> torch.Tensor:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    sync(device)
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        model(**batch).loss.backward()
    flops = int(counter.get_total_flops())
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    start = time.perf_counter()
    done = 0
    loss = torch.zeros(())
    while done < args.steps:
        loss = step()
        done += 1
        if time.monotonic() > deadline:
            break
    sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    steps_per_s = done / elapsed
    return {
        "train_samples_per_s": steps_per_s * batch["input_ids"].shape[0],
        "train_step_ms": 1000.0 / steps_per_s,
        "peak_memory_gib": peak,
        "step_tflop": flops / 1e12,
        "steps_per_s": steps_per_s,
        "timed_steps": float(done),
        "loss": float(loss),
    }


# -------------------------------------------------------------------------------------------------- inference
def random_images(n: int, size: int, seed: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def bench_inference(
    model: Any, args: argparse.Namespace, deadline: float, say: Callable[[str], None]
) -> dict[str, float]:
    """Answers/s of ``VictEngine`` with and without prefix reuse (6 questions per image, fixed token budget)."""
    from vict.inference.engine import VictEngine

    device = model.device
    model.eval()
    size = model.vpg.image_size
    n_q = len(QUESTIONS)
    warm = random_images(max(1, args.infer_batch // n_q), size, seed=1)
    # fresh images for every timed pass (distinct objects, so no cache of an earlier pass can serve them)
    timed = [random_images(args.infer_images, size, seed=2 + r) for r in range(args.infer_repeats)]

    def ask(engine: Any, images: list[Any]) -> list[str]:
        rows = [im for im in images for _ in QUESTIONS]
        questions = [q for _ in images for q in QUESTIONS]
        answers = engine.answer(rows, questions, style="short", max_new_tokens=args.new_tokens)
        return [a.answer for a in answers]

    variants = [("no_reuse", False), ("reuse", True)]
    say(
        f"inference: {args.infer_images} images x {n_q} short questions, batches of {args.infer_batch}, a fixed "
        f"budget of {args.new_tokens} new tokens per answer (random weights never emit eos; min_new_tokens = "
        f"max_new_tokens on the generation config), greedy, features cached per image"
    )
    generation_config = model.base_llm.generation_config
    saved_min = generation_config.min_new_tokens
    generation_config.min_new_tokens = args.new_tokens
    out: dict[str, float] = {}
    texts: dict[str, list[str]] = {}
    try:
        for name, flag in variants:
            if time.monotonic() > deadline:
                say(f"skipped inference {name}: time budget (--max-seconds) spent")
                continue
            try:
                engine = VictEngine(
                    model,
                    batch_size=args.infer_batch,
                    max_new_tokens=args.new_tokens,
                    reuse_features=True,
                    reuse_prefix=flag,
                )
                ask(engine, warm)
                engine.release()
                times = []
                for images in timed:
                    sync(device)
                    start = time.perf_counter()
                    answers = ask(engine, images)
                    sync(device)
                    times.append(time.perf_counter() - start)
                    texts.setdefault(name, answers)  # the first pass's: the same images for every variant
                    engine.release()
                    if time.monotonic() > deadline:
                        break
                out[f"answers_per_s_{name}"] = len(answers) / statistics.median(times)
                del engine
            except Exception as err:  # report, keep the rest of the run
                say(f"failed inference {name} (reuse_prefix={flag}): {type(err).__name__}: {first_line(err)}")
    finally:
        generation_config.min_new_tokens = saved_min
    if "answers_per_s_reuse" in out and "answers_per_s_no_reuse" in out:
        out["prefix_reuse_6q"] = out["answers_per_s_reuse"] / out["answers_per_s_no_reuse"]
        same = sum(a == b for a, b in zip(texts["reuse"], texts["no_reuse"]))
        out["reuse_answers_match"] = same / max(1, len(texts["reuse"]))
    out["new_tokens_per_answer"] = float(args.new_tokens)
    out["questions_per_image"] = float(n_q)
    return out


# ------------------------------------------------------------------------------------------------------- main
QUICK = {"warmup": 1, "steps": 3, "infer_images": 4, "infer_repeats": 1, "mm_repeats": 5}
NORMAL = {"warmup": 3, "steps": 10, "infer_images": 16, "infer_repeats": 2, "mm_repeats": 10}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (tiny shapes only)")
    parser.add_argument(
        "--shapes", choices=("paper", "tiny"), default=None, help="paper (CUDA default) or tiny (CPU default)"
    )
    parser.add_argument(
        "--frozen-dtype",
        choices=("bfloat16", "float16", "float32"),
        default=None,
        help="dtype of the frozen ViT and LLM, and of the peak matmul test (default: bfloat16 on CUDA, float32 on CPU)",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed steps, 4 images, 5 matmul groups")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per method (default 3; quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 10; quick 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="training rows per step (default 8)")
    parser.add_argument("--text-tokens", type=int, default=64, help="text tokens per row, bos included (default 64)")
    parser.add_argument("--target-tokens", type=int, default=16, help="labelled text tokens per row (default 16)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute the LLM's activations")
    parser.add_argument("--infer-method", default="lora", help="the method whose model answers (default lora)")
    parser.add_argument("--skip-inference", action="store_true", help="training figures only")
    parser.add_argument("--infer-images", type=int, default=None, help="images, 6 questions each (default 16)")
    parser.add_argument("--infer-batch", type=int, default=48, help="prompts per generate call (default 48)")
    parser.add_argument("--infer-repeats", type=int, default=None, help="timed passes per variant (default 2)")
    parser.add_argument("--new-tokens", type=int, default=8, help="new tokens per answer, fixed (default 8)")
    parser.add_argument("--mm-size", type=int, default=None, help="peak test matmul size (default 8192; CPU 512)")
    parser.add_argument("--mm-repeats", type=int, default=None, help="timed groups of 10 matmuls (default 10)")
    parser.add_argument("--max-seconds", type=float, default=420.0, help="time budget of the whole run (default 420)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else NORMAL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in PAPER_CASES]
    if unknown or not methods:
        parser.error(f"--methods {args.methods!r}: unknown {unknown}; choose from {', '.join(METHODS)}")
    args.methods = methods
    problems = []
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        problems.append("--steps >= 1, --warmup >= 0 and --batch-size >= 1")
    if not 1 <= args.target_tokens < args.text_tokens:
        problems.append(f"--target-tokens {args.target_tokens}: between 1 and --text-tokens - 1")
    if args.infer_images < 1 or args.infer_batch < 1 or args.infer_repeats < 1 or args.new_tokens < 1:
        problems.append("--infer-images, --infer-batch, --infer-repeats and --new-tokens must be >= 1")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_step: skipped: no CUDA device (torch.cuda.is_available() is False)", flush=True)
        return 0
    if device.type not in ("cuda", "cpu"):
        raise SystemExit(f"gpu_step: --device {args.device!r}: use cuda or cpu")
    shapes = args.shapes or ("paper" if device.type == "cuda" else "tiny")
    if shapes == "paper" and device.type != "cuda":
        raise SystemExit("gpu_step: --shapes paper needs --device cuda (LLaMA-7B is never built on the CPU)")
    frozen_dtype = args.frozen_dtype or ("bfloat16" if device.type == "cuda" else "float32")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    deadline = t0 + args.max_seconds

    from transformers.utils import logging as hf_logging

    from vict.models.flops import human_flops, llm_prefill_flops
    from vict.models.vision_llm import DTYPES

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    def say(text: str) -> None:
        print(f"gpu_step: {text}", flush=True)

    name = device_name(device)
    what = "BLIP-2 ViT-g/14 + Q-Former + LLaMA-7B" if shapes == "paper" else "tiny BLIP-2 + tiny LLaMA"
    say(f"{name} ({device}), torch {torch.__version__}, frozen dtype {frozen_dtype}, {shapes} shapes ({what}), random")
    say(
        f"training: batch {args.batch_size} x ({args.text_tokens} text tokens + the visual tokens), "
        f"{args.target_tokens} labelled, AdamW on the trainable parameters, {args.warmup} warm-up + {args.steps} "
        f"timed steps per method{', gradient checkpointing' if args.gradient_checkpointing else ''}; budget "
        f"{args.max_seconds:.0f} s"
    )
    print(f"device: {name}")
    print(f"torch: {torch.__version__}")
    print(f"dtype: {frozen_dtype}")
    print(f"shapes: {shapes}")
    if device.type == "cuda":
        print(f"gpu_memory_gib: {torch.cuda.get_device_properties(device).total_memory / 2**30:.1f}", flush=True)

    mm_size = args.mm_size or (8192 if device.type == "cuda" else 512)
    peak = measure_peak_flops(device, DTYPES[frozen_dtype], mm_size, args.mm_repeats)
    free_memory(device)
    say(
        f"peak: {mm_size}x{mm_size} {frozen_dtype} torch.mm, median of {args.mm_repeats} groups of 10: {peak / 1e12:.1f} TFLOP/s"
    )
    print(f"peak_tflops_measured: {peak / 1e12:.6g}", flush=True)

    tokenizer = make_tokenizer(shapes)
    rows: dict[str, dict[str, float]] = {}
    infer: dict[str, float] = {}
    failed: list[str] = []
    slowest = 0.0
    for method in args.methods:
        case = PAPER_CASES[method] if shapes == "paper" else tiny_case(method)
        left = deadline - time.monotonic()
        if rows and slowest > left:
            say(
                f"skipped {method}: {max(0.0, left):.0f} s of the budget left, the slowest method so far took {slowest:.0f} s"
            )
            continue
        started = time.monotonic()
        model = None
        try:
            model = build_model(case, shapes, device, frozen_dtype, tokenizer, seed=args.seed)
            if args.gradient_checkpointing:
                model.enable_gradient_checkpointing()
            if device.type == "cuda":  # from here: the weights in place, then whatever training adds
                free_memory(device)
                torch.cuda.reset_peak_memory_stats(device)
            counts = model.trainable_parameters_by_part()
            built = time.monotonic() - started
            batch = make_batch(model, args.batch_size, args.text_tokens, args.target_tokens, seed=args.seed)
            result = bench_train(model, batch, args, deadline)
            del batch
            result["mfu"] = result["step_tflop"] * 1e12 * result["steps_per_s"] / peak
            result["trainable_params"] = float(counts["trainable"])
            result["visual_tokens"] = float(model.num_visual_tokens)
            n_tokens = model.num_visual_tokens + args.text_tokens
            result["llm_fwd_formula_tflop"] = (
                llm_prefill_flops(model.base_llm.config, n_tokens) * args.batch_size / 1e12
            )
            rows[method] = result
            say(
                f"{method}: built in {built:.1f} s, {result['timed_steps']:.0f} timed steps, "
                f"{result['train_samples_per_s']:.2f} samples/s ({case.note or case.method['type']})"
            )
            slowest = max(slowest, time.monotonic() - started)
            if method == args.infer_method and not args.skip_inference:
                model.zero_grad(set_to_none=True)
                free_memory(device)
                infer = bench_inference(model, args, deadline, say)
        except Exception as err:  # e.g. out of memory: report it, free the model, run the others
            failed.append(method)
            say(f"failed {method}: {type(err).__name__}: {first_line(err)}")
            slowest = max(slowest, time.monotonic() - started)
        finally:
            del model
            free_memory(device)
    if args.infer_method not in args.methods and not args.skip_inference:
        say(f"no inference figures: --infer-method {args.infer_method} is not among --methods")

    print()
    header = (
        f"{'method':14} {'visual':>6} {'trainable':>11} {'samples/s':>10} {'ms/step':>9} {'FLOP/step':>12} "
        f"{'peak GiB':>9} {'MFU %':>6} {'loss':>7}"
    )
    print(header)
    print("-" * len(header))
    for method, r in rows.items():
        print(
            f"{method:14} {r['visual_tokens']:6.0f} {r['trainable_params']:11,.0f} {r['train_samples_per_s']:10.2f} "
            f"{r['train_step_ms']:9.1f} {human_flops(r['step_tflop'] * 1e12):>12} {r['peak_memory_gib']:9.2f} "
            f"{100 * r['mfu']:6.1f} {r['loss']:7.3f}"
        )
    if "answers_per_s_no_reuse" in infer:
        reuse = infer.get("answers_per_s_reuse")
        line = f"answers/s (6 questions per image, {args.new_tokens} new tokens): no reuse {infer.get('answers_per_s_no_reuse', math.nan):.2f}"
        if reuse is not None:
            line += f", prefix reuse {reuse:.2f} ({infer.get('prefix_reuse_6q', math.nan):.2f}x)"
        print(line)
    print()
    keys = (
        "train_samples_per_s",
        "train_step_ms",
        "peak_memory_gib",
        "step_tflop",
        "mfu",
        "trainable_params",
        "visual_tokens",
        "loss",
        "llm_fwd_formula_tflop",
    )
    for method, r in rows.items():
        for key in keys:
            print(f"{key}_{method}: {r[key]:.6g}")
    for key, value in infer.items():
        print(f"{key}: {value:.6g}")
    print(f"elapsed_s: {time.monotonic() - t0:.1f}")
    if failed:
        say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
