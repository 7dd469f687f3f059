"""``mm_adapter``: LaVIN's Mixture-of-Modality Adaptation on the frozen LLM (DESIGN §4, the reference code's facts).

Data flow of one batch (``bind`` around every LLM call, training forward and generation alike):

    has_image (b,)  ─► modality embedding (2, d) ─► the modality token's own pass through the LLM (one position;
                       every adapter routes on it)  ─► routing weights per adapted block, per row (b, 2)
    LLM inputs (b, L) ─► every adapted block: input_layernorm ─► x + s·(ŵ0·B(A x) + ŵ1·D(A x)) ─► attention ...

LaVIN prepends the modality token at position 0 and masks it from every later token, so it only steers the
routers. Nothing reads it, and it reads only itself; its hidden states at every block are therefore those of a
one-token sequence, and the other tokens compute exactly as without it, up to a shift of every position by one, to
which rotary position embeddings (LLaMA's) are blind. So the token runs as its own one-token pass, once per batch
for both modalities, and the routing weights it gives are fixed for the whole call: computed once at prefill and
reused for every decoded token, as the reference does at inference. ``tests/unit/methods/test_mm_adapter.py``
checks the equivalence against the prepended token with its attention mask.

Parameters the method adds (saved in ``vict_trainable.safetensors``): per adapted block ``mm_adapter`` (and
``mm_adapter_ffn`` with ``position: attn_ffn``) on the decoder layer, and ``mm_modality`` on the decoder body.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from vict.connectors.base import HAS_IMAGE
from vict.methods.base import Method, decoder_body, switched
from vict.methods.mm_adapter.adapter import MMAdapter
from vict.registry import register_method
from vict.settings import help_field, raise_problems

if TYPE_CHECKING:
    from vict.connectors.base import VisionInput

__all__ = ["HAS_IMAGE", "MMAdapterMethod", "MMAdapterSettings"]


@dataclass
class MMAdapterSettings:
    """LaVIN's MM-Adapter: where it sits, its size, its router's temperature."""

    dim: int = help_field("the adapters' bottleneck width (the shared down-projection's output)", default=8)
    groups: int = help_field("groups of the two up-projection experts (the reference's Conv1d groups)", default=2)
    dropout: float = help_field("dropout on the down-projection's output (training only)", default=0.1)
    scale: float = help_field("scale s of the adapter's output", default=1.0)
    temperature: float = help_field("router softmax temperature τ (the reference: 10 for 7B, 5 for 13B)", default=10.0)
    position: Literal["attn", "attn_ffn"] = help_field(
        "`attn`: an adapter on the normed input before attention (the reference's default); `attn_ffn`: also one "
        "before the FFN (the paper's description)",
        default="attn",
    )
    layers: list[int] | None = help_field("indices of the adapted blocks (null: every block)", default=None)

    def __post_init__(self) -> None:
        problems = []
        if self.dim < 1 or self.groups < 1 or self.dim % self.groups:
            problems.append(
                f"method.dim={self.dim}, method.groups={self.groups}: both >= 1 and dim divisible by groups"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"method.dropout={self.dropout}: must be in [0, 1)")
        if not self.temperature > 0:
            problems.append(f"method.temperature={self.temperature}: must be > 0")
        if self.position not in ("attn", "attn_ffn"):
            problems.append(f"method.position={self.position!r}: use 'attn' or 'attn_ffn'")
        if self.layers is not None and (not self.layers or any(i < 0 for i in self.layers)):
            problems.append(f"method.layers={self.layers}: list block indices >= 0, or null for every block")
        raise_problems(problems, "invalid MM-Adapter settings")


class MMAdapterMethod(Method):
    name = "mm_adapter"
    description = "LaVIN's Mixture-of-Modality adapters: per block, two zero-init experts routed by a modality token"
    trains = "the adapters (down-projection, two experts, router) of the adapted blocks, the modality embedding, the extra queries and the connector"
    settings_class = MMAdapterSettings
    markers = (".mm_adapter.", ".mm_adapter_ffn.", ".mm_modality.")

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self._body: nn.Module | None = None
        self._adapters: list[MMAdapter] = []
        self._hooked_norms: list[nn.Module] = []

    def not_shardable(self) -> str:
        if self.settings.position == "attn_ffn":
            return (
                "with method.position=attn_ffn the routing weights of the adapter before each FFN depend on that "
                "block's attention weights through a path that does not leave the block, which FSDP does not gather "
                "for the backward (measured: the backward reads freed weights); use method.position=attn, or DDP"
            )
        return ""

    def unsharded_parameters(self, llm: nn.Module) -> list[nn.Parameter]:
        # The routers read the output of the adapted norms inside each block (their forward hooks), and the gradient
        # of the routing weights flows back through those norms without passing the block's output: FSDP would have
        # freed their gathered weights by then. They are d floats per block, kept whole.
        return [p for adapter_norm in self._hooked_norms for p in adapter_norm.parameters()]

    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        s = self.settings
        body = decoder_body(llm)
        blocks = getattr(body, "layers", None)
        if blocks is None or not all(hasattr(b, "input_layernorm") for b in blocks):
            raise ValueError(
                f"method.type='mm_adapter' adapts LLaMA-style decoder blocks (body.layers[i].input_layernorm), and "
                f"{type(llm).__name__} has none; use a LLaMA-family LLM or another method"
            )
        chosen = list(range(len(blocks))) if s.layers is None else list(s.layers)
        bad = [i for i in chosen if i >= len(blocks)]
        if bad:
            raise ValueError(f"method.layers {bad}: the LLM has {len(blocks)} blocks (0..{len(blocks) - 1})")
        embeddings = llm.get_input_embeddings().weight
        d = embeddings.shape[1]
        # the modality embedding starts with the spread of the LLM's own word embeddings (the reference draws it
        # from N(0, 1), which for LLaMA is far larger than any word)
        body.mm_modality = nn.Embedding(2, d, device=embeddings.device)
        if not embeddings.is_meta:  # (vict inspect paper counts on the meta device: no values there)
            with torch.no_grad():
                body.mm_modality.weight.normal_(0.0, float(embeddings.float().std()))
        kwargs = {
            "dim": s.dim, "groups": s.groups, "dropout": s.dropout, "scale": s.scale, "temperature": s.temperature,
        }  # fmt: skip
        self._adapters = []
        self._hooked_norms = []
        for i in chosen:
            block = blocks[i]
            spots = [("mm_adapter", block.input_layernorm)]
            if s.position == "attn_ffn":
                spots.append(("mm_adapter_ffn", block.post_attention_layernorm))
            for attr, norm in spots:
                adapter = MMAdapter(d, **kwargs).to(embeddings.device)
                setattr(block, attr, adapter)
                norm.register_forward_hook(adapter.hook)
                self._adapters.append(adapter)
                self._hooked_norms.append(norm)
        self._body = body
        return llm

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any]:
        # The reference's adapter (dim 8, 2 groups, dropout 0.1, tau 10) in every block of the tiny LLaMA; the rate
        # of the other zero-initialised deltas here (docs/tuning.md). `vict-mm_adapter` is VICT's VPG (Q-Former
        # tokens with extra queries) feeding LaVIN's adapters; the `lavin` variant is LaVIN itself: its connector on
        # the vision tower (every block's [CLS], the tiny ViT has 4) and text-only rows mixed in.
        return {
            "settings": {"dim": 8, "groups": 2, "dropout": 0.1, "temperature": 10.0},
            "lr": 5e-3,
            "variants": {
                "lavin": {
                    "connector": {"type": "lavin_cls", "every": 1, "hidden": 128},
                    "num_extra_queries": 0,
                    "text_only_ratio": 0.3,
                }
            },
        }

    # ------------------------------------------------------------------------------------------ forward seam
    def bind(self, vision: VisionInput) -> contextlib.AbstractContextManager:
        has_image = vision.extras.get(HAS_IMAGE)
        if has_image is None:
            has_image = torch.full((vision.tokens.shape[0],), vision.tokens.shape[1] > 0, dtype=torch.bool)
        return self.routed(torch.as_tensor(has_image, dtype=torch.bool))

    @contextlib.contextmanager
    def routed(self, has_image: torch.Tensor) -> Iterator[list[torch.Tensor]]:
        """Within the context every adapter routes the rows by their modality (``has_image (b,)``); yields the
        routing weights per adapter, ``(b, 2)`` each."""
        if self._body is None:
            raise RuntimeError("mm_adapter: apply(llm, vpg) has not run")
        if not self._adapters or not self._adapters[0].enabled:
            yield []
            return
        routing = self.modality_routing()
        rows = has_image.to(routing[0].device).long()
        try:
            for adapter, weights in zip(self._adapters, routing, strict=True):
                adapter.routing = weights[rows]
            yield [a.routing for a in self._adapters]
        finally:
            for adapter in self._adapters:
                adapter.routing = None
                adapter.recorded = None

    def modality_routing(self) -> list[torch.Tensor]:
        """The routing weights of both modalities at every adapter, ``(2, experts)`` each (row 1: has an image):
        the modality tokens' own one-position pass through the LLM, every adapter routing on its input."""
        body = self._body
        table = body.mm_modality.weight
        frozen_dtype = body.get_input_embeddings().weight.dtype
        embeds = table[:, None, :].to(frozen_dtype)
        for adapter in self._adapters:
            adapter.routing = None
        # one token per row at position 0: nothing to mask (no mask also keeps the pass free of data-dependent
        # branches, so it runs on the meta device); the throwaway cache spares transformers its packed-sequence check
        body(inputs_embeds=embeds, use_cache=True)
        routing = [a.recorded for a in self._adapters]
        for adapter in self._adapters:
            adapter.recorded = None
        return routing

    def delta_disabled(self, llm: nn.Module) -> contextlib.AbstractContextManager:
        return switched(self._adapters, False)


register_method(MMAdapterMethod)
