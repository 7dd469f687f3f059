"""Sizes and training budgets of the miniature model zoo, as typed presets.

A preset fixes everything that changes the zoo's weights (architecture sizes, tokenizer kinds and vocabulary
sizes, optimisation steps, learning rates, batch sizes). Budgets are counted in optimiser steps, never in
seconds, so that the same seed gives the same weights on any machine; the presets were sized by measuring
the step time on 2 CPU cores (measured histories: ``docs/tuning.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vict.models.tokenizer import TOKENIZER_KINDS
from vict.settings import help_field, parse_like


@dataclass(frozen=True)
class LMSpec:
    """A tiny decoder-only LM: architecture sizes and its pretraining budget."""

    hidden_size: int = help_field("model width ``d``", default=128)
    num_layers: int = help_field("number of decoder blocks", default=2)
    num_heads: int = help_field("attention heads (``hidden_size`` must be divisible by it)", default=4)
    ffn_size: int = help_field("feed-forward inner size", default=512)
    max_positions: int = help_field("longest sequence (tokens, visual slots included) the LM can see", default=256)
    tokenizer: str = help_field(
        "tokenizer kind: ``wordlevel`` or ``bpe`` (see ``vict.models.tokenizer.train_tokenizer``)",
        default="wordlevel",
    )
    vocab_size: int = help_field("upper bound on the trained vocabulary (special tokens included)", default=1000)
    steps: int = help_field("pretraining optimiser steps on the stream's text documents", default=300)
    batch_size: int = help_field("text documents per step", default=32)
    lr: float = help_field(
        "peak AdamW learning rate (linear warmup over 5% of the steps, cosine decay to 10%)", default=2e-3
    )

    def problems(self, name: str) -> list[str]:
        """Every inconsistency of this spec, each naming the field, the value and the fix."""
        out = []
        if self.hidden_size % self.num_heads:
            out.append(f"{name}.hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.tokenizer not in TOKENIZER_KINDS:
            out.append(f"{name}.tokenizer={self.tokenizer!r}: use one of {list(TOKENIZER_KINDS)}")
        for key in ("hidden_size", "num_layers", "num_heads", "ffn_size", "max_positions", "vocab_size"):
            if getattr(self, key) <= 0:
                out.append(f"{name}.{key}={getattr(self, key)} must be positive")
        if self.steps < 0 or self.batch_size <= 0 or self.lr <= 0:
            out.append(f"{name}: steps >= 0, batch_size > 0 and lr > 0 are required")
        return out


@dataclass(frozen=True)
class Blip2Spec:
    """The tiny BLIP-2: ViT and Q-Former sizes and the captioning budget."""

    image_size: int = help_field(
        "input resolution (the world's images are resized to it by the saved ``BlipImageProcessor``)", default=64
    )
    patch_size: int = help_field(
        "ViT patch size (``(image_size / patch_size)**2`` patches plus one class token)", default=8
    )
    vision_hidden: int = help_field("ViT width", default=128)
    vision_layers: int = help_field("ViT blocks", default=4)
    vision_heads: int = help_field("ViT attention heads", default=4)
    vision_ffn: int = help_field("ViT feed-forward inner size", default=512)
    qformer_hidden: int = help_field("Q-Former width", default=128)
    qformer_layers: int = help_field("Q-Former blocks", default=2)
    qformer_heads: int = help_field("Q-Former attention heads", default=4)
    qformer_ffn: int = help_field("Q-Former feed-forward inner size", default=512)
    cross_attention_frequency: int = help_field(
        "Q-Former cross-attends to the image every this many layers (1 = every layer)", default=1
    )
    num_query_tokens: int = help_field(
        "learnt queries; also the number of ``<image>`` tokens in the source LM prompt", default=16
    )
    vision_steps: int = help_field(
        "stage 1: optimiser steps of the vision encoder's dense attribute pretraining on the scene stream",
        default=3000,
    )
    vision_batch_size: int = help_field("stage 1: fresh stream images per step", default=32)
    vision_lr: float = help_field("stage 1: peak AdamW learning rate", default=1e-3)
    qformer_steps: int = help_field(
        "stage 1 (BLIP-2's representation stage in miniature): optimiser steps of the Q-Former and queries learning "
        "every cell's attributes from the frozen vision encoder (batch vision_batch_size, lr as stage 2); 0 skips it",
        default=1000,
    )
    steps: int = help_field(
        "stage 2 (BLIP-2's generative stage): optimiser steps of Q-Former, queries and projection captioning "
        "fresh stream images through the frozen vision encoder and source LM",
        default=2000,
    )
    batch_size: int = help_field("stage 2: fresh stream images per step", default=16)
    lr: float = help_field("stage 2: peak AdamW learning rate", default=1e-3)
    reading_steps: int = help_field(
        "stage 3 (the reading stage, after the generative one): optimiser steps on fresh stream images whose text is "
        "the dense caption or the image's reading document with the query outputs in place of its dense caption "
        "(vict.zoo.blip2.train_blip2_reading); 0 skips it: BLIP-2's captioning-only recipe, the shipped presets' "
        "(600 made the source BLIP-2 answer 76% of GQA-mini without context, above every VICT row: docs/tuning.md)",
        default=0,
    )
    reading_lr: float = help_field("stage 3: peak AdamW learning rate", default=5e-4)
    reading_caption_p: float = help_field(
        "stage 3: share of images whose text is the dense caption (the rest get a reading document)", default=0.5
    )
    init_std: float = help_field(
        "std of the vision initialiser and of the query tokens (transformers defaults: 1e-10 and 0)", default=0.02
    )
    train_language_model: bool = help_field(
        "also tune the source LM in stage 2, replaying its pretraining documents (it is then saved, tuned, as "
        "source_lm/ too, so the BLIP-2's LM and the source LM stay one model): with the 2-layer OPT frozen, "
        "captions named the right colour only half the time although the queries carried every attribute "
        "(docs/tuning.md); false is BLIP-2's frozen-LM recipe",
        default=True,
    )

    def problems(self) -> list[str]:
        """Every inconsistency of this spec, each naming the field, the value and the fix."""
        out = []
        if self.image_size % self.patch_size:
            out.append(f"blip2.image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
        if self.vision_hidden % self.vision_heads:
            out.append(f"blip2.vision_hidden={self.vision_hidden} not divisible by vision_heads={self.vision_heads}")
        if self.qformer_hidden % self.qformer_heads:
            out.append(
                f"blip2.qformer_hidden={self.qformer_hidden} not divisible by qformer_heads={self.qformer_heads}"
            )
        if self.num_query_tokens <= 0:
            out.append(f"blip2.num_query_tokens={self.num_query_tokens} must be positive")
        if self.steps < 0 or self.batch_size <= 0 or self.lr <= 0:
            out.append("blip2: steps >= 0, batch_size > 0 and lr > 0 are required")
        if self.reading_steps < 0 or self.reading_lr <= 0 or not 0.0 <= self.reading_caption_p <= 1.0:
            out.append("blip2: reading_steps >= 0, reading_lr > 0 and 0 <= reading_caption_p <= 1 are required")
        if self.qformer_steps < 0:
            out.append(f"blip2.qformer_steps={self.qformer_steps} must be >= 0")
        if self.vision_steps < 0 or self.vision_batch_size <= 0 or self.vision_lr <= 0:
            out.append("blip2: vision_steps >= 0, vision_batch_size > 0 and vision_lr > 0 are required")
        return out


@dataclass(frozen=True)
class ZooConfig:
    """Everything that determines the zoo's weights. Its hash (with the seed) names the cache folder."""

    name: str = help_field(
        "preset this config came from (informational; part of the hash like every field)", default="default"
    )
    source_lm: LMSpec = help_field(
        "the OPT source LM inside the BLIP-2", default_factory=lambda: LMSpec(tokenizer="wordlevel")
    )
    target_lm: LMSpec = help_field(
        "the LLaMA target LM that VICT gives eyes to",
        default_factory=lambda: LMSpec(tokenizer="bpe", vocab_size=1200),
    )
    blip2: Blip2Spec = help_field(
        "the tiny BLIP-2 (ViT, Q-Former, queries) and its captioning budget", default_factory=Blip2Spec
    )
    num_threads: int = help_field(
        "torch.set_num_threads during the build: fixed, for reproducibility (CPU kernels may reduce in another "
        "order with another thread count), and 1, the fastest on a shared 2-core machine (docs/tuning.md)",
        default=1,
    )
    text_scenes: int = help_field(
        "stream scenes whose captions and questions make the LMs' pretraining documents (and train the tokenizers)",
        default=30000,
    )
    eval_images: int = help_field(
        "held-out stream images (another stream seed) that measure the BLIP-2's caption quality", default=64
    )

    def __post_init__(self) -> None:
        problems = self.source_lm.problems("source_lm") + self.target_lm.problems("target_lm") + self.blip2.problems()
        if self.source_lm.tokenizer == self.target_lm.tokenizer:
            problems.append(
                f"source_lm.tokenizer and target_lm.tokenizer are both {self.source_lm.tokenizer!r}: the transfer "
                "is only real with different tokenizers; set one to 'wordlevel' and the other to 'bpe'"
            )
        if self.num_threads <= 0:
            problems.append(f"num_threads={self.num_threads} must be positive")
        if problems:
            raise ValueError("invalid zoo config:\n  - " + "\n  - ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (nested dicts), the input of the cache hash."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZooConfig:
        """Inverse of ``to_dict``."""
        data = dict(data)
        return cls(
            source_lm=LMSpec(**data.pop("source_lm")),
            target_lm=LMSpec(**data.pop("target_lm")),
            blip2=Blip2Spec(**data.pop("blip2")),
            **data,
        )


def _preset(name: str, lm_steps: int, vision_steps: int, blip2_steps: int, text_scenes: int) -> ZooConfig:
    return ZooConfig(
        name=name,
        source_lm=LMSpec(tokenizer="wordlevel", steps=lm_steps),
        target_lm=LMSpec(tokenizer="bpe", vocab_size=1200, steps=lm_steps),
        blip2=Blip2Spec(vision_steps=vision_steps, steps=blip2_steps),
        text_scenes=text_scenes,
        eval_images=96,
    )


PRESETS: dict[str, ZooConfig] = {
    # `micro`: for unit tests only (seconds); the weights learn little.
    "micro": ZooConfig(
        name="micro",
        source_lm=LMSpec(hidden_size=32, num_layers=1, num_heads=2, ffn_size=64, steps=30, batch_size=16),
        target_lm=LMSpec(
            hidden_size=32, num_layers=1, num_heads=2, ffn_size=64, tokenizer="bpe", vocab_size=400, steps=30
        ),
        blip2=Blip2Spec(
            vision_hidden=32,
            vision_layers=1,
            vision_heads=2,
            vision_ffn=64,
            qformer_hidden=32,
            qformer_layers=1,
            qformer_heads=2,
            qformer_ffn=64,
            num_query_tokens=4,
            patch_size=16,
            vision_steps=20,
            vision_batch_size=8,
            qformer_steps=10,
            steps=30,
            batch_size=8,
            lr=3e-3,
            reading_steps=10,
            reading_lr=1e-3,
        ),
        text_scenes=150,
        eval_images=8,
    ),
    "fast": _preset("fast", lm_steps=600, vision_steps=800, blip2_steps=500, text_scenes=8000),
    "default": _preset("default", lm_steps=3000, vision_steps=3000, blip2_steps=2000, text_scenes=30000),
}
"""Named zoo configs: ``micro`` (tests, seconds), ``fast`` (a rough zoo in minutes), ``default`` (the zoo that
ships with the package, ``vict.zoo.shipped``; about an hour on one core: 3744 s measured)."""


def get_preset(name: str) -> ZooConfig:
    """The zoo config of preset ``name``; a clear error lists the known names."""
    if name not in PRESETS:
        raise ValueError(f"unknown zoo preset {name!r}; use one of {sorted(PRESETS)}")
    return PRESETS[name]


def with_overrides(config: ZooConfig, overrides: Sequence[str]) -> ZooConfig:
    """``config`` with ``KEY=VALUE`` settings applied (``vict zoo build --set``): dotted keys of ``to_dict()``
    (``blip2.reading_steps=600``, ``target_lm.num_layers=4``, ``text_scenes=10000``), each value read as the
    field's type. An unknown key, a value of the wrong type or a malformed item is a ``ValueError`` naming it
    (and, for a key, the known ones); the result is validated like any config."""
    data = config.to_dict()
    known = sorted(_dotted_keys(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. blip2.reading_steps=600")
        *parents, leaf = key.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node or isinstance(node[leaf], dict):
            raise ValueError(f"--set {item!r}: unknown zoo setting {key!r}; known settings: {', '.join(known)}")
        value = parse_like(node[leaf], raw.strip())
        if value is None:
            raise ValueError(
                f"--set {item!r}: {key} takes a {type(node[leaf]).__name__} (it is {node[leaf]!r}), got {raw.strip()!r}"
            )
        node[leaf] = value
    return ZooConfig.from_dict(data)


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _dotted_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out
