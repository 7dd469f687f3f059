"""The connector seam: how vision enters the LLM.

A connector turns the VPG's features of a batch of images into a ``VisionInput``: ``tokens (b, n, d_llm)``
placed at the image slots of the prompt (``n`` may be 0) and, for methods that need them, ``extras`` (for example
per-image weight deltas) that the method consumes while the LLM runs. ``VisionLLM`` only wires
``VPG -> connector -> LLM``; what flows through the seam is decided here and in the method.

Feature levels and caching: a connector computes from ``pixels`` through named ``levels`` (for the Q-Former
connector: ``pixels`` -> ``vision`` (the ViT output) -> ``queries`` (the Q-Former output)) and can resume from
any of them. ``cache_level(training)`` names the deepest level that does not change while the cache lives: during
training, the deepest one computed by frozen parameters only; at inference, the last level before the connector's
own layers. One ``FeatureCache`` per model stores that level per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

HAS_IMAGE = "has_image"
"""``VisionInput.extras`` key: ``(b,)`` bool, which rows carry an image. ``VisionLLM`` sets it from the image slots
(a row without slots is text only) when the connector gives visual tokens; a connector with zero tokens may set it."""


class VisionFeatures(NamedTuple):
    """Features of a batch of images at a named level (``value`` is ``(b, ...)``)."""

    level: str
    value: torch.Tensor


@dataclass
class VisionInput:
    """What a connector hands to the LLM side for a batch of ``b`` images.

    Attributes:
        tokens: ``(b, n, d_llm)`` visual tokens for the ``n`` image slots of each row (``n = 0``: none).
        extras: anything else a method consumes while the LLM runs (e.g. per-image weight deltas), keyed by name.
    """

    tokens: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class Connector(nn.Module):
    """Base class of connectors. Subclasses set the class attributes and implement ``num_tokens``,
    ``features`` and ``forward``; ``__init__(settings, vpg, d_llm, device)`` builds the trainable layers in float32.

    Class attributes:
        name: registry name (``connector.type``).
        description: one line for ``vict methods`` and the docs.
        settings_class: the settings dataclass (fields documented with ``vict.settings.help_field``).
        levels: feature levels from ``"pixels"`` on, in computation order.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings_class: ClassVar[type] = type(None)
    levels: ClassVar[tuple[str, ...]] = ("pixels",)

    def __init__(self, settings: Any, vpg: nn.Module | None = None, d_llm: int = 0, device: Any = None) -> None:
        """Subclasses build their layers for ``vpg`` and an LLM of width ``d_llm``, in float32 on ``device``."""
        super().__init__()
        self.settings = settings

    def num_tokens(self, vpg: nn.Module) -> int:
        """Visual tokens per image (image slots per prompt)."""
        raise NotImplementedError

    def cache_level(self, vpg: nn.Module, training: bool) -> str:
        """The level a feature cache stores (see the module docstring)."""
        return "pixels"

    def input_level(self, vpg: nn.Module) -> str:
        """The level the connector's own layers read (the frozen VPG's part ends there); the last by default."""
        return self.levels[-1]

    def features(self, vpg: nn.Module, pixel_values: torch.Tensor, level: str) -> torch.Tensor:
        """Features at ``level`` of ``pixel_values (b, 3, S, S)``."""
        self.check_level(level)
        return pixel_values

    def forward(self, vpg: nn.Module, features: VisionFeatures) -> VisionInput:
        """The ``VisionInput`` of a batch, from features at any of ``levels``."""
        raise NotImplementedError

    def is_trainable(self, name: str) -> bool:
        """Whether the connector's own parameter ``name`` (relative to the connector) trains; all by default."""
        return True

    def check_level(self, level: str) -> None:
        if level not in self.levels:
            raise ValueError(f"connector {self.name!r} has no feature level {level!r}; levels: {list(self.levels)}")

    def describe(self, vpg: nn.Module) -> str:
        """One line for ``vict inspect``: what the connector does, with sizes."""
        return f"{self.name}: {self.num_tokens(vpg)} visual tokens per image"
