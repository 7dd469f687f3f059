"""Compute accounting: what one image and T text tokens cost each method, by one formula and by counting.

The LLM's prefill (one forward over ``n`` tokens: the visual tokens plus T text tokens; a method with no visual
tokens, VLoRA, has ``n = T``) follows one formula, for a LLaMA-style block with a SwiGLU MLP:

    per block   2·n·(d·(d_q + 2·d_kv) + d_q·d + 3·d·d_ff) + 4·n²·d_q
    head        2·n·d·V

``d`` the hidden size, ``d_q = heads · head_dim`` (= d for LLaMA), ``d_kv = kv_heads · head_dim`` (= d without
grouped-query attention), ``d_ff`` the MLP's width, ``V`` the vocabulary. The first term counts the q, k, v and o
projections and the MLP's three matrices (2 FLOPs per multiply-add); the second ``QKᵀ`` and ``AV``
(``2·n²·d_q`` each, the causal mask not discounted, as the kernels compute it); the head gives logits at every
position. With ``d_q = d_kv = d`` the block term is the familiar ``2·n·(4d² + 3·d·d_ff) + 4·n²·d``. Norms, rotary
embeddings, softmax and activations (O(n·d)) are left out.

Everything else is counted, not guessed: ``torch.utils.flop_counter.FlopCounterMode`` over a forward on the meta
device (no weights, no arithmetic; the paper-scale model never exists in memory). ``method_compute`` counts:

- ``vpg``: the frozen VPG up to what the connector's own layers read (``Connector.input_level``) (the vision tower, with LaVIN's adapters where
  ``lavin_cls`` puts them, and the Q-Former where the connector reads it);
- ``connector``: the connector's own layers (projection, LaVIN's MLP, VLoRA's generator);
- ``llm``: the LLM's prefill with the method's delta (LoRA's matrices, adapters, VLoRA's deltas);
- ``llm_bare``: the same prefill with the delta off, and ``llm_formula`` the formula for the same ``n``;

so ``llm - llm_bare`` is what the method's delta costs, and ``llm_bare - llm_formula`` what the formula leaves out
(0 for LLaMA: norms and softmax are not matmuls). ``tests/unit/models/test_flops.py`` checks the formula against
the counted forward within 5%.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def llm_prefill_flops(config: Any, n_tokens: int) -> int:
    """The formula (module docstring) for one prefill of ``n_tokens`` through a LLaMA-style ``config``."""
    d, d_ff, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    d_q, d_kv, n = heads * head_dim, kv_heads * head_dim, n_tokens
    block = 2 * n * (d * (d_q + 2 * d_kv) + d_q * d + 3 * d * d_ff) + 4 * n * n * d_q
    return config.num_hidden_layers * block + 2 * n * d * vocab


def _cpu_sdpa_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(
    grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *_: Any, **__: Any
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}
"""The CPU kernel of ``scaled_dot_product_attention`` and its backward, which ``FlopCounterMode`` does not count by
itself (it counts the CUDA kernels and, on the meta device, the math path's matmuls): ``QKᵀ`` and ``AV`` forward;
``dQ``, ``dK``, ``dV`` and the recomputed scores backward, as for the CUDA kernels."""


def counted(fn: Callable[[], Any]) -> tuple[int, Any]:
    """``(FLOPs, result)`` of ``fn()``: the FLOPs of the matrix products and attention kernels it runs
    (``FlopCounterMode``; works on the meta device and, with ``CPU_ATTENTION``, counts CPU attention too)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        result = fn()
    return int(counter.get_total_flops()), result


def counted_flops(fn: Callable[[], Any]) -> int:
    """The FLOPs of ``counted``."""
    return counted(fn)[0]


def method_compute(model: nn.Module, text_tokens: int) -> dict[str, int]:
    """Counted FLOPs of one image and ``text_tokens`` text tokens through ``model`` (a ``VisionLLM``, on any device,
    the meta device included): ``visual_tokens``, ``llm_tokens`` (``n``), ``vpg``, ``connector``, ``llm``,
    ``llm_bare``, ``llm_formula`` and ``total`` (``vpg + connector + llm``)."""
    if text_tokens < 1:
        raise ValueError(f"text_tokens={text_tokens}: count at least one text token")
    vpg, connector = model.vpg, model.connector
    device = next(model.parameters()).device
    size = vpg.image_size
    # an image (all-zero pixels would be the collator's mark of a text-only row)
    pixels = torch.ones(1, 3, size, size, device=device)
    # the VPG up to what the connector's own layers read (the Q-Former outputs; LaVIN's tapped [CLS] tokens)
    vpg_flops = counted_flops(lambda: connector.features(vpg, pixels, connector.input_level(vpg)))
    with_connector, vision = counted(lambda: model.encode_images(pixel_values=pixels))
    n = vision.tokens.shape[1] + text_tokens
    embeddings = model.base_llm.get_input_embeddings().weight
    embeds = torch.zeros(1, n, embeddings.shape[1], dtype=embeddings.dtype, device=device)

    def prefill() -> None:  # one unpadded row, no mask: no data-dependent branch, so it runs on the meta device
        with model.method.bind(vision):
            model.llm(inputs_embeds=embeds)

    llm = counted_flops(prefill)
    with model.method.delta_disabled(model.llm):
        llm_bare = counted_flops(prefill)
    return {
        "visual_tokens": int(vision.tokens.shape[1]),
        "llm_tokens": n,
        "vpg": vpg_flops,
        "connector": with_connector - vpg_flops,
        "llm": llm,
        "llm_bare": llm_bare,
        "llm_formula": llm_prefill_flops(model.base_llm.config, n),
        "total": with_connector + llm,
    }


def human_flops(flops: float) -> str:
    """``1.23 TFLOP``-style text."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.2f} {unit}"
    return f"{flops:.0f} FLOP"
