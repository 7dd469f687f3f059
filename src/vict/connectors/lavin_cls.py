"""``lavin_cls``: LaVIN's connector: the frozen vision tower's [CLS] token after every k-th block, through a
2-layer MLP adapter into the LLM (no Q-Former).

``pixels (b, 3, S, S) -> ViT, hidden states of every block -> cls (b, n_blocks / every, d_vision)`` (the [CLS]
token after blocks ``every, 2·every, ...``, each through the tower's final layer norm, so the last one is the
[CLS] of the tower's ``last_hidden_state``) ``-> Linear(d_vision, hidden) -> SiLU -> Linear(hidden, d_llm)``.

With ``vision_adapters`` (the reference's setting, the default), every block of the frozen tower also gets the same
Mixture-of-Modality adapter as the LLM (the reference's ``RepAdapter_Router``: a shared down-projection to ``dim``, two
zero-initialised grouped experts, so the tower starts unchanged) on its normed input before attention, routed by
each image's own [CLS] token. They belong to the connector (trained and saved with it); the tower's own weights stay
frozen. Since the [CLS] tokens then depend on trained weights, the feature cache keeps pixels (the
tower reruns per step; it is the frozen parts' cheapest).

The reference reads CLIP ViT-L/14 (24 blocks, every 4th: 6 tokens of 1024, hidden 128); here the tower is the
BLIP-2 VPG's, so the same BLIP-2 checkpoint serves VICT's rows and LaVIN's. The Q-Former and its queries are unused
(``model.num_extra_queries`` must be 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vict.connectors.base import Connector, VisionFeatures, VisionInput
from vict.methods.mm_adapter.adapter import MMAdapter
from vict.registry import register_connector
from vict.settings import help_field, raise_problems

VISION_ADAPTER_GROUPS = 2
"""Groups of the vision-tower adapters' up-projection (the reference's)."""


@dataclass
class LavinClsSettings:
    """Which blocks' [CLS] tokens, and the adapter's width."""

    every: int = help_field(
        "take the [CLS] token after every `every`-th block of the vision tower (the reference: 4 of 24, 6 tokens)",
        default=4,
    )
    hidden: int = help_field("hidden width of the 2-layer MLP adapter (the reference: 128)", default=128)
    vision_adapters: bool = help_field(
        "LaVIN's adapters inside the frozen vision tower, one before each block's attention (the reference's)",
        default=True,
    )
    vision_adapter_dim: int = help_field(
        "bottleneck of the vision-tower adapters (the reference: 8; groups 2, dropout 0.1, scale 1)", default=8
    )
    vision_adapter_temperature: float = help_field(
        "router temperature of the vision-tower adapters (the reference: the LLM adapters' τ, 10)", default=10.0
    )

    def __post_init__(self) -> None:
        problems = []
        if self.vision_adapter_dim < 2 or self.vision_adapter_dim % 2:
            problems.append(
                f"connector.vision_adapter_dim={self.vision_adapter_dim}: must be even and >= 2 (2 groups)"
            )
        if not self.vision_adapter_temperature > 0:
            problems.append(f"connector.vision_adapter_temperature={self.vision_adapter_temperature}: must be > 0")
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
        self.vision_adapters: nn.ModuleList | None = None
        if settings.vision_adapters:
            self.vision_adapters = nn.ModuleList(
                MMAdapter(
                    d_vision,
                    settings.vision_adapter_dim,
                    groups=VISION_ADAPTER_GROUPS,
                    temperature=settings.vision_adapter_temperature,
                ).to(**kw)
                for _ in range(blocks)
            )
            for layer, adapter in zip(vpg.vision_model.encoder.layers, self.vision_adapters, strict=True):
                layer.layer_norm1.register_forward_hook(adapter.hook)

    def num_tokens(self, vpg: nn.Module) -> int:
        return len(self.taps)

    def cache_level(self, vpg: nn.Module, training: bool) -> str:
        # the adapters inside the tower train: its [CLS] tokens are not fixed, so the cache keeps pixels
        if self.vision_adapters is not None:
            return "pixels"
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
        inside = ""
        if self.vision_adapters is not None:
            inside = f", adapters (dim {self.settings.vision_adapter_dim}) in all {len(self.vision_adapters)} blocks"
        return (
            f"{self.name}: [CLS] after blocks {blocks} ({len(self.taps)} tokens per image), "
            f"MLP({d_v} -> {self.settings.hidden} -> {d_llm}, SiLU){inside}"
        )


register_connector(LavinCls)
