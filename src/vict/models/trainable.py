"""Helpers driven by a model's single trainable predicate: ``requires_grad``, train mode, counts, saved tensors.

A ``VisionLLM`` answers ``is_trainable(name)`` from its parts (extra queries and connector by default, the method's
say on top); everything here takes that predicate, so what trains and what a checkpoint saves cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

Predicate = Callable[[str], bool]

PARTS: tuple[str, ...] = ("vision", "qformer", "extra_queries", "connector", "llm", "method", "other")
"""Parts of a ``VisionLLM``, in data-flow order (see ``VisionLLM.part_of``)."""


def mark_trainable(model: nn.Module, is_trainable: Predicate) -> None:
    """Set ``requires_grad`` on every parameter of ``model`` from ``is_trainable``."""
    for name, param in model.named_parameters():
        param.requires_grad_(is_trainable(name))


def set_frozen_eval(model: nn.Module, mode: bool, method_owns: Predicate) -> None:
    """Put ``model`` in train mode ``mode`` except frozen submodules, which stay in eval mode.

    A module follows ``mode`` only if it owns trainable parameters or the method added it (``method_owns``: e.g.
    LoRA's dropout): dropout in the frozen Q-Former, ViT or LLM must never fire during training, because the method
    treats them as fixed functions. Sets the ``training`` flags directly (no ``train()`` overrides are called).
    """
    for name, module in model.named_modules():
        owns_trainable = any(p.requires_grad for p in module.parameters(recurse=False))
        module.training = bool(mode and (owns_trainable or (name and method_owns(name))))
    model.training = mode


def count_by_part(
    named_parameters: Iterable[tuple[str, nn.Parameter]], is_trainable: Predicate, part_of: Callable[[str], str]
) -> dict:
    """``{"parts": {part: {"trainable": n, "frozen": n}}, "trainable": n, "frozen": n, "total": n}``.

    Parts with no parameters are left out; works on the meta device (only shapes are used).
    """
    parts: dict[str, dict[str, int]] = {}
    for name, param in named_parameters:
        kind = "trainable" if is_trainable(name) else "frozen"
        entry = parts.setdefault(part_of(name), {"trainable": 0, "frozen": 0})
        entry[kind] += param.numel()
    ordered = {p: parts[p] for p in PARTS if p in parts} | {p: v for p, v in parts.items() if p not in PARTS}
    trainable = sum(v["trainable"] for v in ordered.values())
    frozen = sum(v["frozen"] for v in ordered.values())
    return {"parts": ordered, "trainable": trainable, "frozen": frozen, "total": trainable + frozen}


def trainable_state_dict(model: nn.Module, is_trainable: Predicate) -> dict[str, torch.Tensor]:
    """Detached copies of exactly the parameters ``is_trainable`` selects, keyed by their full names."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if is_trainable(n)}
