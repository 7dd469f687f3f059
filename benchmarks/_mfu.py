"""Model FLOPs utilisation for ``train_throughput.py``: a matmul peak, counted step FLOPs, a synthetic batch.

- ``matmul_peak``: the best sustained float32 FLOP/s of ``torch.mm`` on square ``n x n`` matrices
  (``2 n³`` FLOPs each), at the process's torch thread count: per size a warm-up, then timed repeats, the median
  of the repeats; the maximum over sizes.
- ``step_flops``: the FLOPs of one training step (forward and backward of ``model(**batch).loss``) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and attention kernels; norms,
  activations, softmax and the optimizer are not matmuls and count 0), with ``vict.models.flops.CPU_ATTENTION``
  (the CPU SDPA kernel and its backward, which ``FlopCounterMode`` does not count by itself).
- ``synthetic_batch``: a batch for the larger random model (``vict.models.builders.build_bench``).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
from vict.models.flops import CPU_ATTENTION

PEAK_SIZES = (512, 1024, 1536, 2048)


@torch.no_grad()
def matmul_peak(sizes: tuple[int, ...] = PEAK_SIZES, seconds: float = 1.0, min_repeats: int = 5) -> dict[int, float]:
    """``{n: median FLOP/s of torch.mm(n x n, n x n)}`` in float32; each size warms up twice, then repeats for about
    ``seconds`` (at least ``min_repeats`` times). The peak is the maximum of the values."""
    out = {}
    for n in sizes:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        for _ in range(2):
            torch.mm(a, b, out=c)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < min_repeats or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            times.append(time.perf_counter() - t)
        out[n] = 2 * n**3 / statistics.median(times)
    return out


def step_flops(model: torch.nn.Module, batch: dict[str, Any]) -> int:
    """Counted FLOPs of the forward and backward of ``model(**batch).loss``; the gradients are dropped after."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        model(**batch).loss.backward()
    for p in model.parameters():
        p.grad = None
    return int(counter.get_total_flops())


def synthetic_batch(model: Any, batch: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images and ``batch = (rows, text tokens)`` rows of ``[num_visual_tokens image slots ; text tokens]``
    (no padding), the loss on the last third of the text tokens."""
    rows, text = batch
    generator = torch.Generator().manual_seed(seed)
    slots = torch.full((rows, model.num_visual_tokens), IMAGE_SLOT_ID)
    vocab = model.base_llm.get_input_embeddings().num_embeddings
    text_ids = torch.randint(3, vocab, (rows, text), generator=generator)  # past pad/bos/eos
    input_ids = torch.cat([slots, text_ids], dim=1)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    target = max(1, text // 3)
    labels[:, -target:] = input_ids[:, -target:]
    size = model.vpg.image_size
    return {
        "pixel_values": torch.randn(rows, 3, size, size, generator=generator),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }
