"""LaVIN's Mixture-of-Modality adapter (the reference's ``RepAdapter_Router``), as a module the method hooks in.

One adapter reads the output ``x`` of a LLaMA block's ``input_layernorm`` (the normed input before attention) and
returns ``x + s·(ŵ0·B(drop(A x)) + ŵ1·D(drop(A x)))``:

- ``A`` (``down``): a shared ``Linear(d → dim)``, Xavier-uniform weight, zero bias;
- ``B``, ``D`` (``experts``): two grouped up-projections ``dim → d`` with ``groups`` groups (each group maps
  ``dim / groups`` inputs to ``d / groups`` outputs, the reference's ``Conv1d(groups=2)``), zero-initialised, so a
  fresh adapter is the identity and the model starts as the frozen LLM;
- no activation; dropout on ``A x``; ``s`` the scale;
- ``ŵ = softmax(router(x_m) / τ)``: the router (``Linear(d → 2)``) reads ``x_m``, the normed input of the sequence's
  modality token at this block. ``routing`` holds ``ŵ`` per row, set by ``vict.methods.mm_adapter`` before the LLM
  runs; with ``routing`` unset the adapter routes on its input's first position (the modality token's own pass; in
  the vision tower, where LaVIN's connector puts the same adapters, each image's own [CLS] token).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GroupedLinear(nn.Module):
    """``groups`` independent ``Linear(in / groups → out / groups)`` side by side (a 1x1 ``Conv1d(groups=...)``)."""

    def __init__(self, in_features: int, out_features: int, groups: int) -> None:
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(
                f"grouped projection {in_features} -> {out_features} with {groups} groups: both sizes must divide "
                "by the number of groups (method.groups)"
            )
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(groups, out_features // groups, in_features // groups))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.reshape(*x.shape[:-1], self.groups, -1)
        out = torch.einsum("...gi,goi->...go", grouped, self.weight.to(x.dtype))
        return out.reshape(*x.shape[:-1], -1) + self.bias.to(x.dtype)


class MMAdapter(nn.Module):
    """One Mixture-of-Modality adapter (see the module docstring)."""

    def __init__(
        self, d: int, dim: int = 8, groups: int = 2, experts: int = 2, dropout: float = 0.1, scale: float = 1.0,
        temperature: float = 10.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.down = nn.Linear(d, dim)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        self.experts = nn.ModuleList(GroupedLinear(dim, d, groups) for _ in range(experts))
        self.router = nn.Linear(d, experts)
        bound = 1.0 / math.sqrt(d)  # nn.Linear's own init, made explicit: the router starts near uniform
        nn.init.uniform_(self.router.weight, -bound, bound)
        nn.init.uniform_(self.router.bias, -bound, bound)
        self.dropout = nn.Dropout(dropout)
        self.scale, self.temperature = scale, temperature
        self.routing: torch.Tensor | None = None
        """``(b, experts)`` routing weights of the rows of the next LLM calls; None: route on position 0."""
        self.recorded: torch.Tensor | None = None
        """The routing weights computed in the last call without ``routing`` (the modality token's pass)."""
        self.enabled = True

    def route(self, modality_input: torch.Tensor) -> torch.Tensor:
        """``softmax(router(x_m) / τ)`` for ``x_m (b, d)``: ``(b, experts)``."""
        logits = self.router(modality_input.to(self.router.weight.dtype))
        return torch.softmax(logits / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.routing is None:
            weights = self.route(x[:, 0])
            self.recorded = weights
        else:
            weights = self.routing
            if weights.shape[0] != x.shape[0]:  # rows expanded by generate (beams, num_return_sequences)
                if x.shape[0] % weights.shape[0]:
                    raise ValueError(f"routing for {weights.shape[0]} rows cannot serve a batch of {x.shape[0]}")
                weights = weights.repeat_interleave(x.shape[0] // weights.shape[0], dim=0)
        hidden = self.dropout(self.down(x.to(self.down.weight.dtype)))
        delta = sum(weights[:, i, None, None] * expert(hidden) for i, expert in enumerate(self.experts))
        return x + (self.scale * delta).to(x.dtype)

    def hook(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        """A forward hook that applies the adapter to ``module``'s output (a block's normed input)."""
        return self(output)
