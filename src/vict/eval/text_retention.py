"""Text retention: does the target LM still model plain text once VICT has given it eyes?

Held-out perplexity of the VICT model's LLM, on text alone, with the method's delta switched off
(``Method.delta_disabled``: the untouched target LM) and on (what VICT trained). Texts are encoded as the zoo
pretrained its LMs (``vict.zoo.lm.encode_texts``: ``<s> text </s>``, truncated to the LM's context), with the
checkpoint's own tokenizer. A method whose delta depends on the image (``Method.bind``) is measured without an
image here, so only its static part counts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vict.constants import IGNORE_INDEX
from vict.zoo.lm import encode_texts, pad_batch

if TYPE_CHECKING:
    from vict.models.vision_llm import VisionLLM

BATCH_SIZE = 64
"""Texts per forward pass."""


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode (no dropout) for a block, each put back in its own mode afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@torch.no_grad()
def perplexity(
    lm: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = BATCH_SIZE
) -> float:
    """Token-level perplexity of the causal LM ``lm`` on ``texts``: ``exp`` of the mean negative log-likelihood
    over every target token of every text (each token after ``<s>``, ``</s>`` included), no gradient.

    Args:
        lm: a causal LM called as ``lm(input_ids=(b, L), attention_mask=(b, L)).logits -> (b, L, vocab)``.
        tokenizer: the LM's own tokenizer (it adds ``<s>``; ``</s>`` is appended).
        texts: the held-out texts (at least one).
        max_length: longest encoded text in tokens (the LM's context; longer texts are truncated, ``</s>`` kept).
        batch_size: texts per forward pass.
    """
    if not texts:
        raise ValueError("perplexity of no text: pass at least one held-out text")
    seqs = encode_texts(tokenizer, list(texts), max_length)
    device = next(lm.parameters()).device
    dtype = next(lm.parameters()).dtype
    # A half-precision frozen base with fp32 deltas runs under autocast, as in VisionLLM's own forward.
    cast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    total, count = 0.0, 0
    with _eval_mode(lm), cast:
        for start in range(0, len(seqs), batch_size):
            input_ids, mask, labels = pad_batch(seqs[start : start + batch_size], tokenizer.pad_token_id)
            logits = lm(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            target = labels[:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                target.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            total += nll.item()
            count += int((target != IGNORE_INDEX).sum())
    return math.exp(total / count)


def text_retention(
    model: VisionLLM, texts: Sequence[str], max_length: int | None = None, batch_size: int = BATCH_SIZE
) -> dict[str, float]:
    """Held-out perplexity of ``model``'s LLM on ``texts`` with the method's delta off and on.

    Args:
        model: a VICT model (e.g. ``VictEngine.from_checkpoint(dir).model``); its ``tokenizer`` encodes the texts.
        texts: held-out plain text, e.g. ``vict.zoo.corpus.world_documents(load_split(world, "test"))``.
        max_length: token limit per text; default the LLM's ``max_position_embeddings`` (the zoo pretrains at it).
        batch_size: texts per forward pass.

    Returns:
        ``{"ppl_base": float, "ppl_tuned": float}``: ``ppl_base`` equals the perplexity of the untouched target LM
        (``Method.delta_disabled``), ``ppl_tuned`` is that of the LLM with the trained delta.
    """
    base_config = model.base_llm.config
    if max_length is None:
        max_length = int(getattr(base_config, "max_position_embeddings", 0) or 2048)
    with model.method.delta_disabled(model.llm):
        ppl_base = perplexity(model.llm, model.tokenizer, texts, max_length, batch_size)
    ppl_tuned = perplexity(model.llm, model.tokenizer, texts, max_length, batch_size)
    return {"ppl_base": ppl_base, "ppl_tuned": ppl_tuned}
