"""Stage 1 of the zoo: pretrain the vision encoder on the in-memory scene stream with dense attribute supervision.

Real BLIP-2 starts from a vision encoder pretrained elsewhere (EVA-CLIP, contrastive image-text; the first ViTs
were pretrained by supervised classification). The miniature's encoder is pretrained the supervised way, densely:
nine learnt cell queries read the ViT's patch tokens through one cross-attention block, and linear heads predict,
for every grid cell, whether it holds an object and that object's colour, shape and size. The head is thrown away
afterwards (as CLIP's text tower is for BLIP-2); only ``Blip2VisionModel`` weights are kept.

Why this objective (docs/tuning.md has the measurements): captioning from scratch on a fixed set of images left
shape near chance, and the dense per-cell targets give every object's every attribute a gradient in every step,
while the stream (fresh images each step) rules out memorising images.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import Blip2ForConditionalGeneration

from vict.constants import IGNORE_INDEX
from vict.zoo.presets import Blip2Spec
from vict.zoo.stream import ATTRIBUTES, NUM_CELLS, SceneStream
from vict.zoo.training import ProgressFn, TrainTrace, quiet, run_steps

HEADS: dict[str, int] = {"occupied": 2, **{name: len(values) for name, values in ATTRIBUTES.items()}}
"""Per-cell prediction heads and their number of classes."""


class CellHead(nn.Module):
    """Nine learnt queries, one cross-attention + MLP block over the patch tokens, a linear head per target."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(NUM_CELLS, width) * 0.02)
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.heads = nn.ModuleDict({name: nn.Linear(width, n) for name, n in HEADS.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """``tokens (b, n, width)`` -> ``{target: logits (b, 9, classes)}``."""
        q = self.norm_q(self.queries).expand(tokens.shape[0], -1, -1)
        kv = self.norm_kv(tokens)
        x = q + self.attention(q, kv, kv, need_weights=False)[0]
        x = x + self.mlp(self.norm_mlp(x))
        return {name: head(x) for name, head in self.heads.items()}


def cell_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over targets of the mean cross entropy (attributes only on occupied cells)."""
    total = logits["occupied"].new_zeros(())
    for name, value in logits.items():
        total = total + nn.functional.cross_entropy(
            value.reshape(-1, value.shape[-1]), labels[name].reshape(-1), ignore_index=IGNORE_INDEX
        )
    return total


@torch.no_grad()
def cell_accuracy(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Percent correct per target (attributes over occupied cells, ``occupied`` over all cells)."""
    out = {}
    for name, value in logits.items():
        target = labels[name]
        keep = target != IGNORE_INDEX
        out[name] = round(100.0 * float((value.argmax(-1)[keep] == target[keep]).float().mean()), 2)
    return out


def pretrain_cells(
    encode: Callable[[torch.Tensor], torch.Tensor],
    trainable: list[nn.Parameter],
    *,
    width: int,
    heads: int,
    steps: int,
    batch_size: int,
    lr: float,
    image_size: int,
    seed: int,
    held_out_seed: int,
    stage: str,
    progress: ProgressFn = quiet,
    held_out: int = 256,
    max_steps: int | None = None,
) -> tuple[TrainTrace, dict[str, float]]:
    """Train ``trainable`` (and a fresh ``CellHead``) so that ``encode(pixels) -> tokens (b, n, width)`` carries
    every cell's attributes, for ``steps`` steps of ``batch_size`` fresh images of stream ``seed``.

    Returns the loss trace and the head's accuracy on ``held_out`` images of stream ``held_out_seed`` (``max_steps``:
    stop early on the same schedule)."""
    torch.manual_seed(seed)
    head = CellHead(width, heads)
    stream = SceneStream(seed, image_size)
    counter = itertools.count()

    def predict(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return head(encode(pixels))

    def loss_fn(_: torch.Tensor) -> torch.Tensor:
        batch = stream.batch(next(counter) * batch_size, batch_size, text=False)
        return cell_loss(predict(batch.pixels), batch.labels)

    trace = run_steps(
        loss_fn,
        [*trainable, *head.parameters()],
        batch_size,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        stage=stage,
        progress=progress,
        max_steps=max_steps,
    )
    test = SceneStream(held_out_seed, image_size).batch(0, held_out, text=False)
    with torch.no_grad():
        accuracy = cell_accuracy(predict(test.pixels), test.labels)
    return trace, accuracy


def pretrain_vision(model: Blip2ForConditionalGeneration, spec: Blip2Spec, **kwargs: Any) -> tuple[TrainTrace, dict]:
    """Stage 0: the ViT (``model.vision_model``) learns every cell's attributes from its patch tokens."""
    vision = model.vision_model
    vision.train()
    out = pretrain_cells(
        lambda pixels: vision(pixel_values=pixels).last_hidden_state,
        [p for p in vision.parameters() if p.requires_grad],
        width=vision.config.hidden_size,
        heads=spec.vision_heads,
        steps=spec.vision_steps,
        batch_size=spec.vision_batch_size,
        lr=spec.vision_lr,
        image_size=spec.image_size,
        stage="vision encoder (dense attribute pretraining)",
        **kwargs,
    )
    vision.eval()
    return out


def pretrain_qformer(model: Blip2ForConditionalGeneration, spec: Blip2Spec, **kwargs: Any) -> tuple[TrainTrace, dict]:
    """BLIP-2's stage 1 in miniature: the Q-Former and its queries learn, against the frozen ViT, to extract what
    the text of the image says (every cell's attributes, the content of the dense caption), read from the query
    outputs by a small attention head that is then discarded."""
    vision, qformer = model.vision_model, model.qformer
    vision.requires_grad_(False)
    vision.eval()
    qformer.train()

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            image = vision(pixel_values=pixels).last_hidden_state
        queries = model.query_tokens.expand(pixels.shape[0], -1, -1)
        return qformer(query_embeds=queries, encoder_hidden_states=image).last_hidden_state

    out = pretrain_cells(
        encode,
        [*qformer.parameters(), model.query_tokens],
        width=qformer.config.hidden_size,
        heads=spec.qformer_heads,
        steps=spec.qformer_steps,
        batch_size=spec.vision_batch_size,
        lr=spec.lr,
        image_size=spec.image_size,
        stage="Q-Former (stage 1: attribute extraction)",
        **kwargs,
    )
    qformer.eval()
    return out
