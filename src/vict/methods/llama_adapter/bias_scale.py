"""LLaMA-Adapter V2's bias, scale and norm tuning, as modules the method hooks onto the frozen LLM's layers.

V2 (arXiv 2304.15010, §3.1) unfreezes "bias, scale and norm" besides the adaption prompts: every linear layer of
the LLaMA computes ``s ⊙ (W x + b)`` with a learned per-channel scale ``s`` (initialised to 1) and bias ``b``
(initialised to 0), and the RMSNorm weights train. Here the frozen weights stay untouched: a forward hook on each
linear layer applies ``s ⊙ (y + b)`` to its output ``y = W x``, and one on each RMSNorm multiplies its output by a
learned ``s`` (``s ⊙ (w ⊙ x̂)`` is the norm with weight ``w ⊙ s``, so this is norm tuning written as a delta). At
initialisation every hook is the identity, and with ``enabled`` off the LLM computes exactly as before.
"""

from __future__ import annotations

import torch
from torch import nn

ATTRIBUTE = "v2_bias_scale"
"""Name under which each hooked layer holds its ``BiasScale`` (so its parameters read
``...q_proj.v2_bias_scale.scale``)."""


class BiasScale(nn.Module):
    """A per-channel ``scale`` (ones) and, for linear layers, ``bias`` (zeros): ``forward(y) = scale ⊙ (y + bias)``."""

    def __init__(self, channels: int, bias: bool, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, device=device))
        self.bias = nn.Parameter(torch.zeros(channels, device=device)) if bias else None
        self.enabled = True

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return y
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y * self.scale.to(y.dtype)

    def hook(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        return self(output)


def is_norm(module: nn.Module) -> bool:
    """An RMSNorm or LayerNorm of a decoder (by class name: every transformers family names them ``*RMSNorm`` or
    ``*LayerNorm``)."""
    name = type(module).__name__
    return name.endswith("RMSNorm") or name.endswith("LayerNorm")


def attach(body: nn.Module) -> list[BiasScale]:
    """Hook a ``BiasScale`` onto every linear layer and norm inside ``body.layers`` and onto ``body.norm`` (the final
    norm); return them in module order. ``body`` is the decoder (``LlamaModel``)."""
    targets: list[tuple[nn.Module, int, bool]] = []
    for block in body.layers:
        for module in block.modules():
            if isinstance(module, nn.Linear):
                targets.append((module, module.out_features, True))
            elif is_norm(module):
                targets.append((module, module.weight.shape[0], False))
    final = getattr(body, "norm", None)
    if final is not None and is_norm(final):
        targets.append((final, final.weight.shape[0], False))
    added = []
    for module, channels, bias in targets:
        if hasattr(module, ATTRIBUTE):  # a layer reached twice (a shared module): one delta
            continue
        delta = BiasScale(channels, bias, device=module.weight.device)
        setattr(module, ATTRIBUTE, delta)
        module.register_forward_hook(delta.hook)
        added.append(delta)
    return added
