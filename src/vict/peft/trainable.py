"""The single predicate that decides what trains and what a checkpoint saves.

A parameter of a ``VisionLLM`` is trainable iff ``is_trainable(name)``: the extra query embeddings, the
projection, and the PEFT delta inside the LLM. ``mark_trainable`` sets ``requires_grad`` from it, and the
checkpoint code saves exactly the parameters it selects, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

EXTRA_QUERIES = "vpg.extra_queries"
PROJECTION_PREFIX = "projection."
LLM_PREFIX = "llm."

# Name fragments of the parameters peft adds: LoRA (A/B matrices, embedding variants, DoRA magnitudes) and
# AdaptionPrompt (prompts and their zero-initialised gates).
PEFT_MARKERS: tuple[str, ...] = (
    ".lora_A.",
    ".lora_B.",
    ".lora_embedding_A.",
    ".lora_embedding_B.",
    ".lora_magnitude_vector.",
    ".adaption_prompt",
    ".adaption_gate",
)


def is_peft_parameter(name: str) -> bool:
    """True for a parameter added by the PEFT delta (name as in ``llm.named_parameters()`` or with ``llm.``)."""
    name = "." + name
    return any(marker in name for marker in PEFT_MARKERS)


def is_trainable(name: str) -> bool:
    """True iff the ``VisionLLM`` parameter ``name`` is trained (and saved): extra queries, projection, PEFT."""
    if name == EXTRA_QUERIES or name.startswith(PROJECTION_PREFIX):
        return True
    return name.startswith(LLM_PREFIX) and is_peft_parameter(name[len(LLM_PREFIX) :])


def part_of(name: str) -> str:
    """The part a ``VisionLLM`` parameter belongs to.

    Trainable parts: ``extra_queries``, ``projection``, ``peft``. Frozen parts: ``vision`` (ViT),
    ``qformer`` (Q-Former and its original query tokens), ``llm`` (the base LLM), ``other``.
    """
    if name == EXTRA_QUERIES:
        return "extra_queries"
    if name.startswith(PROJECTION_PREFIX):
        return "projection"
    if name.startswith(LLM_PREFIX):
        return "peft" if is_peft_parameter(name[len(LLM_PREFIX) :]) else "llm"
    if name.startswith("vpg.vision_model."):
        return "vision"
    if name.startswith(("vpg.qformer.", "vpg.query_tokens")):
        return "qformer"
    return "other"


def mark_trainable(model: nn.Module) -> None:
    """Set ``requires_grad`` on every parameter of ``model`` from ``is_trainable``."""
    for name, param in model.named_parameters():
        param.requires_grad_(is_trainable(name))


def trainable_named_parameters(model: nn.Module) -> Iterable[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs the predicate selects, in module order."""
    return ((n, p) for n, p in model.named_parameters() if is_trainable(n))


def count_by_part(model: nn.Module) -> dict[str, int]:
    """Parameter counts by part (see ``part_of``) plus ``trainable``, ``frozen`` and ``total`` sums.

    Works on the meta device (only shapes are used).
    """
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = part_of(name)
        counts[part] = counts.get(part, 0) + param.numel()
    trainable_parts = ("extra_queries", "projection", "peft")
    out = {p: counts.get(p, 0) for p in trainable_parts}
    out["trainable"] = sum(out.values())
    for p in ("vision", "qformer", "llm", "other"):
        if counts.get(p, 0) or p != "other":
            out[f"frozen_{p}"] = counts.get(p, 0)
    out["frozen"] = sum(v for k, v in counts.items() if k not in trainable_parts)
    out["total"] = out["trainable"] + out["frozen"]
    return out


def set_frozen_eval(model: nn.Module, mode: bool) -> None:
    """Put ``model`` in train mode ``mode`` except frozen submodules, which stay in eval mode.

    A module is put in train mode only if it owns trainable parameters or is a PEFT dropout (``lora_dropout``):
    dropout in the frozen Q-Former, ViT or LLM must never fire during training, because the method treats
    them as fixed functions. Sets the ``training`` flags directly (no ``train()`` overrides are called).
    """
    for name, module in model.named_modules():
        owns_trainable = any(p.requires_grad for p in module.parameters(recurse=False))
        module.training = bool(mode and (owns_trainable or ".lora_dropout." in f".{name}."))
    model.training = mode


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of exactly the parameters ``is_trainable`` selects, keyed by their full names."""
    return {n: p.detach().clone() for n, p in trainable_named_parameters(model)}
