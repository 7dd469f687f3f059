"""``lavin_cls``: LaVIN's connector: the frozen vision tower's [CLS] token after every k-th block, through a
2-layer MLP adapter into the LLM (no Q-Former).

``pixels (b, 3, S, S) -> ViT, hidden states of every block -> cls (b, n_blocks / every, d_vision)`` (the [CLS]
token after blocks ``every, 2·every, ...``, each through the tower's final layer norm, so the last one is the
[CLS] of the tower's ``last_hidden_state``) ``-> Linear(d_vision, hidden) -> SiLU -> Linear(hidden, d_llm)``.

The reference reads CLIP ViT-L/14 (24 blocks, every 4th: 6 tokens of 1024, hidden 128); here the tower is the
BLIP-2 VPG's, so the same BLIP-2 checkpoint serves VICT's rows and LaVIN's. The Q-Former and its queries are unused
(``model.num_extra_queries`` must be 0). LaVIN's adapters inside the frozen vision tower are not built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vict.connectors.base import Connector, VisionFeatures, VisionInput
from vict.registry import register_connector
from vict.settings import help_field, raise_problems


@dataclass
class LavinClsSettings:
    """Which blocks' [CLS] tokens, and the adapter's width."""

    every: int = help_field(
        "take the [CLS] token after every `every`-th block of the vision tower (the reference: 4 of 24, 6 tokens)",
        default=4,
    )
    hidden: int = help_field("hidden width of the 2-layer MLP adapter (the reference: 128)", default=128)

    def __post_init__(self) -> None:
        problems = []
        if self.every < 1:
            problems.append(f"connector.every={self.every}: must be >= 1")
        if self.hidden < 1:
            problems.append(f"connector.hidden={self.hidden}: must be >= 1")
        raise_problems(problems, "invalid lavin_cls settings")


class LavinCls(Connector):
    name = "lavin_cls"
    description = "LaVIN's: the vision tower's [CLS] after every k-th block through a 2-layer SiLU MLP (no Q-Former)"
    settings_class = LavinClsSettings
    levels = ("pixels", "cls")

    def __init__(self, settings: Any, vpg: nn.Module, d_llm: int, device: Any = None) -> None:
        super().__init__(settings)
        blocks = vpg.vision_model.config.num_hidden_layers
        if settings.every > blocks:
            raise ValueError(
                f"connector.every={settings.every}: the vision tower has only {blocks} blocks; use 1..{blocks}"
            )
        if vpg.num_extra_queries:
            raise ValueError(
                f"connector.type=lavin_cls does not use the Q-Former, so its {vpg.num_extra_queries} extra queries "
                "would never train: set model.num_extra_queries: 0"
            )
        self.taps = tuple(range(settings.every, blocks + 1, settings.every))
        d_vision = vpg.vision_hidden_size
        kw = {"device": device, "dtype": torch.float32}
        self.adapter = nn.Sequential(
            nn.Linear(d_vision, settings.hidden, **kw), nn.SiLU(), nn.Linear(settings.hidden, d_llm, **kw)
        )

    def num_tokens(self, vpg: nn.Module) -> int:
        return len(self.taps)

    def cache_level(self, vpg: nn.Module, training: bool) -> str:
        if training and any(p.requires_grad for p in vpg.vision_model.parameters()):
            return "pixels"
        return "cls"

    def features(self, vpg: nn.Module, pixel_values: torch.Tensor, level: str) -> torch.Tensor:
        self.check_level(level)
        return pixel_values if level == "pixels" else self.cls_tokens(vpg, pixel_values)

    def cls_tokens(self, vpg: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(b, len(taps), d_vision)``: the [CLS] token after each tapped block, through the final layer norm."""
        vpg.check_pixel_values(pixel_values)
        tower = vpg.vision_model
        dtype = tower.embeddings.patch_embedding.weight.dtype
        out = tower(pixel_values=pixel_values.to(dtype), output_hidden_states=True)
        # hidden_states[0] is the embeddings' output, hidden_states[i] the output of block i
        cls = torch.stack([out.hidden_states[i][:, 0] for i in self.taps], dim=1)
        return tower.post_layernorm(cls)

    def forward(self, vpg: nn.Module, features: VisionFeatures) -> VisionInput:
        self.check_level(features.level)
        value = features.value
        if features.level == "pixels":
            value = self.cls_tokens(vpg, value)
        first = self.adapter[0]
        return VisionInput(tokens=self.adapter(value.to(first.weight.dtype)))

    def describe(self, vpg: nn.Module) -> str:
        d_v, d_llm = self.adapter[0].in_features, self.adapter[2].out_features
        blocks = ", ".join(map(str, self.taps))
        return (
            f"{self.name}: [CLS] after blocks {blocks} ({len(self.taps)} tokens per image), "
            f"MLP({d_v} -> {self.settings.hidden} -> {d_llm}, SiLU)"
        )


register_connector(LavinCls)
