"""``vlora_generator``: VLoRA's perceptual weights generator. No visual tokens: per image, the A matrices of the
low-rank weight deltas that ``vict.methods.vlora`` adds inside the frozen LLM (DESIGN §4).

``pixels (b, 3, S, S) -> ViT -> vision -> Q-Former with [original ; extra] queries -> queries (b, n_q, d_qformer)
-> Linear(d_qformer, width) + learned position embedding (n_q, width) -> memory``

(``source: patches``: the vision tower's ``[CLS]`` and patch tokens ``(b, 1 + n_patches, d_vision)`` take the
Q-Former outputs' place, as the reference reads its CLIP tower's; no Q-Former, no extra queries.)

``k learnable queries (k, width) -> depth x pre-LN decoder block [x + SelfAttn(LN x); x + CrossAttn(LN x, memory);
x + MLP(LN x), GELU, 4 x width] -> LayerNorm -> one Linear(width, d_in * r) head per weight type
-> A[type] (b, k, d_in, r)``

Query ``i`` gives the A matrices of the ``i``-th adapted LLM block, so ``k`` is the number of adapted blocks (the
reference: 32 / 4 = 8). The reference's ``WeightsGenerater`` (``weights_sep=True`` in its scripts) runs one such
stack per weight type; here, as DESIGN §4 describes it, the weight types share one stack and differ in their heads.
Initialisation is the reference's init function: ``Linear`` weights truncated normal (std 0.02) with zero biases,
LayerNorms at 1 / 0. Its branch for the queries and the position embedding (truncated normal, std 0.02) is never
reached there (``Module.apply`` visits modules, not parameters), so they stay standard normal; here they get the
intended std 0.02: standard-normal positions drown the projected features in the memory (on the tiny model the A
matrices then vary about 15 times less from image to image).

Who decides the shapes: the connector is built before the method is applied (``VisionLLM.compose``), and only the
method knows the adapted blocks and its rank, so its settings hold ``rank``, ``every``, ``weight_types`` (and
``alpha``) while these settings hold the generator's own size (``width``, ``depth``, ``heads``). After ``apply``,
the method's ``connect(connector)`` (``vict.methods.vlora``) hands the generator a ``WeightShapes``, and
``build_heads`` creates the ``k`` queries and the heads, seeded with the rest of the model. One source of truth per number: a
config cannot state the rank twice and disagree.

Levels and caching are the Q-Former connector's (``pixels -> vision -> queries``; the cache keeps the Q-Former outputs
at inference, and during training while the Q-Former and the extra queries are frozen). Text-only rows: a zero-token
connector has no image slots to tell them apart, so the generator reads the collator's convention: a text-only row's
image is all-zero pixels (``VictCollator``'s blank). ``features`` maps such a row to all-zero features at every level
(so cached features keep the mark), and ``forward`` sets ``extras[HAS_IMAGE]`` false for all-zero rows. A real image
never normalises to exactly zero everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from vict.connectors.base import HAS_IMAGE, Connector, VisionFeatures, VisionInput
from vict.connectors.qformer_tokens import QFormerTokens
from vict.registry import register_connector
from vict.settings import help_field, raise_problems

VLORA_A = "vlora_A"
"""``VisionInput.extras`` key: ``{weight type: (b, k, d_in, r)}``, the A matrices of each adapted block per image."""

MLP_RATIO = 4
"""Hidden width of the decoder blocks' MLP, in multiples of ``width`` (the reference's)."""


@dataclass
class VLoRAGeneratorSettings:
    """The generator's size (the rank, the adapted blocks and the weight types are the method's settings)."""

    source: Literal["queries", "patches"] = help_field(
        "what the generator reads: the Q-Former's query outputs (the VPG VICT transfers), or the vision tower's "
        "[CLS] and patch features (its last layer; the reference reads CLIP's second-to-last) with no Q-Former, "
        "which then needs model.num_extra_queries: 0",
        default="queries",
    )
    width: int = help_field("width of the generator's decoder blocks (the reference: 512)", default=512)
    depth: int = help_field("decoder blocks of the generator (the reference: 8)", default=8)
    heads: int = help_field("attention heads per decoder block (must divide width)", default=8)

    def __post_init__(self) -> None:
        problems = []
        for name in ("width", "depth", "heads"):
            if getattr(self, name) < 1:
                problems.append(f"connector.{name}={getattr(self, name)}: must be >= 1")
        if self.source not in ("queries", "patches"):
            problems.append(f"connector.source={self.source!r}: use 'queries' or 'patches'")
        if self.width >= 1 and self.heads >= 1 and self.width % self.heads:
            problems.append(f"connector.heads={self.heads}: must divide connector.width={self.width}")
        raise_problems(problems, "invalid vlora_generator settings")


@dataclass(frozen=True)
class WeightShapes:
    """What the generator produces per image: ``blocks`` adapted LLM blocks (one query each), and for each weight
    type the input size ``d_in`` of its A matrix ``(d_in, rank)``."""

    blocks: int
    inputs: dict[str, int]
    rank: int


class DecoderBlock(nn.Module):
    """Pre-LN decoder block: self-attention over the queries, cross-attention to the memory, GELU MLP."""

    def __init__(self, width: int, heads: int, **kw: Any) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, **kw)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True, **kw)
        self.norm2 = nn.LayerNorm(width, **kw)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True, **kw)
        self.norm3 = nn.LayerNorm(width, **kw)
        hidden = MLP_RATIO * width
        self.mlp = nn.Sequential(nn.Linear(width, hidden, **kw), nn.GELU(), nn.Linear(hidden, width, **kw))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``x (b, k, width)`` queries, ``memory (b, n, width)`` -> ``(b, k, width)``."""
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        # the memory enters unnormalised (the reference's): it is the projected features plus positions
        x = x + self.cross_attn(self.norm2(x), memory, memory, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


def _reference_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):  # (MultiheadAttention's out_proj too; its in_proj keeps torch's Xavier)
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def text_only_rows(value: torch.Tensor) -> torch.Tensor:
    """``(b,)`` bool: the rows of ``value (b, ...)`` that are all zero (a text-only row's blank, at any level)."""
    return ~value.flatten(1).ne(0).any(dim=1)


class VLoRAGenerator(Connector):
    name = "vlora_generator"
    description = "VLoRA's: no visual tokens; per image, A matrices of low-rank LLM weight deltas from the Q-Former"
    settings_class = VLoRAGeneratorSettings
    levels = QFormerTokens.levels

    def input_level(self, vpg: nn.Module) -> str:
        return "vision" if self.settings.source == "patches" else "queries"

    def cache_level(self, vpg: nn.Module, training: bool) -> str:
        # reading the Q-Former: the Q-Former connector's policy; reading patches: the tower's output, unless it trains
        if self.settings.source == "queries":
            return QFormerTokens.cache_level(self, vpg, training)
        if training and any(p.requires_grad for p in vpg.vision_model.parameters()):
            return "pixels"
        return "vision"

    def __init__(self, settings: Any, vpg: nn.Module, d_llm: int, device: Any = None) -> None:
        super().__init__(settings)
        self.d_llm = d_llm
        kw = {"device": device, "dtype": torch.float32}
        width = settings.width
        if settings.source == "patches":
            if vpg.num_extra_queries:
                raise ValueError(
                    f"connector.source=patches does not use the Q-Former, so its {vpg.num_extra_queries} extra queries "
                    "would never train: set model.num_extra_queries: 0"
                )
            vision = vpg.vision_model.config
            d_in, n_in = vpg.vision_hidden_size, (vision.image_size // vision.patch_size) ** 2 + 1
        else:
            d_in, n_in = vpg.hidden_size, vpg.num_queries
        self.visual_proj = nn.Linear(d_in, width, **kw)
        self.pos_embed = nn.Parameter(torch.empty(n_in, width, **kw))
        self.blocks = nn.ModuleList(DecoderBlock(width, settings.heads, **kw) for _ in range(settings.depth))
        self.norm = nn.LayerNorm(width, **kw)
        self.shapes: WeightShapes | None = None
        self.queries: nn.Parameter | None = None
        self.heads = nn.ModuleDict()
        self.apply(_reference_init)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def build_heads(self, shapes: WeightShapes) -> None:
        """Create the ``shapes.blocks`` queries and one head per weight type (called by the method's ``connect``)."""
        if self.shapes is not None:
            if shapes != self.shapes:
                raise ValueError(f"{self.name}: already built for {self.shapes}, asked for {shapes}")
            return
        width = self.settings.width
        kw = {"device": self.visual_proj.weight.device, "dtype": torch.float32}
        self.queries = nn.Parameter(torch.empty(shapes.blocks, width, **kw))
        for kind, d_in in shapes.inputs.items():
            self.heads[kind] = nn.Linear(width, d_in * shapes.rank, **kw)
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.heads.apply(_reference_init)
        self.shapes = shapes

    def num_tokens(self, vpg: nn.Module) -> int:
        return 0

    def features(self, vpg: nn.Module, pixel_values: torch.Tensor, level: str) -> torch.Tensor:
        self.check_level(level)
        if level == "pixels":
            return pixel_values
        embeds = vpg.encode_vision(pixel_values)
        value = embeds if level == "vision" else vpg.query(embeds)
        return _blank(value, text_only_rows(pixel_values))

    def forward(self, vpg: nn.Module, features: VisionFeatures) -> VisionInput:
        self.check_level(features.level)
        if self.shapes is None:
            raise RuntimeError(
                f"connector {self.name!r} makes the A matrices of method.type='vlora', which sizes its heads "
                "(Method.connect); build the model with method.type: vlora"
            )
        value = features.value
        has_image = ~text_only_rows(value)
        if features.level == "pixels":
            value = vpg.encode_vision(value)
        reads = self.input_level(vpg)
        if reads == "queries" and features.level != "queries":
            value = vpg.query(value)
        elif reads == "vision" and features.level == "queries":
            raise ValueError(
                f"connector.source=patches reads the vision tower's features, not level {features.level!r}"
            )
        a = self.generate(value)
        tokens = value.new_zeros(value.shape[0], 0, self.d_llm)
        return VisionInput(tokens=tokens, extras={VLORA_A: a, HAS_IMAGE: has_image})

    def generate(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{type: (b, k, d_in, r)}`` from the visual features ``(b, n, d)`` (the Q-Former outputs, or the tower's
        tokens with ``source: patches``)."""
        memory = self.visual_proj(visual.to(self.visual_proj.weight.dtype)) + self.pos_embed
        x = self.queries.expand(memory.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, memory)
        x = self.norm(x)
        b, k, r = x.shape[0], self.shapes.blocks, self.shapes.rank
        return {kind: head(x).view(b, k, -1, r) for kind, head in self.heads.items()}

    def describe(self, vpg: nn.Module) -> str:
        s = self.settings
        read = "Q-Former outputs" if s.source == "queries" else "vision-tower tokens ([CLS] + patches)"
        trunk = (
            f"{self.pos_embed.shape[0]} {read} -> Linear({self.visual_proj.in_features} -> {s.width}) + positions; "
            f"{s.depth} decoder blocks (width {s.width}, {s.heads} heads)"
        )
        if self.shapes is None:
            return f"{self.name}: no visual tokens; {trunk}; heads not built (needs method.type=vlora)"
        heads = ", ".join(f"{kind} ({d_in} x {self.shapes.rank})" for kind, d_in in self.shapes.inputs.items())
        return (
            f"{self.name}: no visual tokens; {trunk}; {self.shapes.blocks} queries -> A per image for each adapted "
            f"block: {heads}"
        )


def _blank(value: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    # no branch on the values (so the meta device can run it, vict.models.flops)
    return value.masked_fill(rows.view(-1, *([1] * (value.dim() - 1))).to(value.device), 0)


register_connector(VLoRAGenerator)
