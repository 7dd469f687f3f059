"""``qformer_tokens``: the Q-Former's query outputs through one trainable ``Linear``, at the prompt's image slots.

``pixels (b, 3, S, S) -> ViT -> vision (b, n_patches + 1, d_vision) -> Q-Former with [original ; extra] queries ->
queries (b, n_orig + n_extra, d_qformer) -> Linear(d_qformer, d_llm) -> tokens (b, n_orig + n_extra, d_llm)``.

The projection is BLIP-2's ``language_projection`` for a new LLM (VICT trains it from a random start; VPGTrans
starts it from a given matrix: ``connector.init_weights`` or ``QFormerTokens.init_projection``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vict.connectors.base import Connector, VisionFeatures, VisionInput
from vict.registry import register_connector
from vict.settings import help_field


@dataclass
class QFormerTokensSettings:
    """Where the projection starts."""

    init_weights: str | None = help_field(
        "safetensors file holding `weight` (d_llm, d_qformer) and `bias` (d_llm) to start the projection from "
        "(e.g. a VPGTrans merged projector); null: random initialisation",
        default=None,
    )


class QFormerTokens(Connector):
    name = "qformer_tokens"
    description = "the Q-Former's query outputs through a trainable Linear, placed at the prompt's image slots"
    settings_class = QFormerTokensSettings
    levels = ("pixels", "vision", "queries")

    def __init__(self, settings: Any, vpg: nn.Module, d_llm: int, device: Any = None) -> None:
        super().__init__(settings)
        self.projection = nn.Linear(vpg.hidden_size, d_llm, device=device, dtype=torch.float32)
        if settings.init_weights:
            from vict.checkpoint import load_tensors

            tensors = load_tensors(settings.init_weights)
            missing = sorted({"weight", "bias"} - set(tensors))
            if missing:
                raise ValueError(
                    f"connector.init_weights={settings.init_weights}: holds {sorted(tensors)}, needs 'weight' and "
                    f"'bias' (missing {missing})"
                )
            self.init_projection(tensors["weight"], tensors["bias"], source=str(settings.init_weights))

    @torch.no_grad()
    def init_projection(self, weight: torch.Tensor, bias: torch.Tensor, source: str = "init_projection") -> None:
        """Start the projection from ``weight (d_llm, d_qformer)`` and ``bias (d_llm,)``."""
        want_w, want_b = tuple(self.projection.weight.shape), tuple(self.projection.bias.shape)
        if tuple(weight.shape) != want_w or tuple(bias.shape) != want_b:
            raise ValueError(
                f"{source}: weight {tuple(weight.shape)} / bias {tuple(bias.shape)} do not fit the projection "
                f"(d_llm, d_qformer) = {want_w} / {want_b}"
            )
        self.projection.weight.copy_(weight.to(self.projection.weight.dtype))
        self.projection.bias.copy_(bias.to(self.projection.bias.dtype))

    def num_tokens(self, vpg: nn.Module) -> int:
        return vpg.num_queries

    def cache_level(self, vpg: nn.Module, training: bool) -> str:
        if not training:
            return "queries"
        if any(p.requires_grad for p in vpg.vision_model.parameters()):
            return "pixels"
        qformer_trains = any(p.requires_grad for p in vpg.qformer.parameters()) or vpg.query_tokens.requires_grad
        if qformer_trains or (vpg.num_extra_queries and vpg.extra_queries.requires_grad):
            return "vision"
        return "queries"

    def features(self, vpg: nn.Module, pixel_values: torch.Tensor, level: str) -> torch.Tensor:
        self.check_level(level)
        if level == "pixels":
            return pixel_values
        embeds = vpg.encode_vision(pixel_values)
        return embeds if level == "vision" else vpg.query(embeds)

    def forward(self, vpg: nn.Module, features: VisionFeatures) -> VisionInput:
        self.check_level(features.level)
        value = features.value
        if features.level == "pixels":
            value = vpg.encode_vision(value)
        if features.level != "queries":
            value = vpg.query(value)
        return VisionInput(tokens=self.projection(value.to(self.projection.weight.dtype)))

    def describe(self, vpg: nn.Module) -> str:
        d_q, d_llm = self.projection.in_features, self.projection.out_features
        start = f", from {self.settings.init_weights}" if self.settings.init_weights else ""
        return f"{self.name}: {vpg.num_queries} Q-Former tokens per image, Linear({d_q} -> {d_llm}){start}"


register_connector(QFormerTokens)
