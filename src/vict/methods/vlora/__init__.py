"""``vlora``: VLoRA's perceptual weights (DESIGN §4, the reference code's facts). No visual tokens: each image
becomes low-rank deltas of the frozen LLM's weights.

Data flow of one batch (``bind`` around every LLM call, training forward and generation alike):

    image ─► vlora_generator (connector) ─► A[type] (b, k, d_in, r): per image, one A per adapted block and type
    LLM inputs (b, L), text only ─► every adapted block (i + 1) % every == 0, per row:
        q/k/v/o_proj:  y = W x + s·(x A) Bᵀ          (A: d_in x r of the projection's input, B: d_out x r)
        mlp:           y = MLP(x) + s·(x A_m) B_mᵀ  (one d x d delta from the MLP input, parallel to the whole MLP)

``B`` is a learned parameter per adapted block and weight type, zero-initialised (so the model starts as the frozen
LLM) and shared across images; ``s = alpha / rank``. The delta is computed as two thin matmuls, never as a
materialised ``d_out x d_in`` matrix. Text-only rows (``extras[HAS_IMAGE]`` false) get their A zeroed, so no delta;
outside ``bind`` (a plain text LM call) there is none either.

Shapes are split between the two parts (``vict.connectors.vlora_generator`` says why): ``rank``, ``every``,
``weight_types`` and ``alpha`` are this method's settings; ``connect`` hands the generator the number of adapted blocks
(its number of queries, ``k``), each type's ``d_in`` (the real module shapes: ``o_proj`` reads ``heads x head_dim``)
and the rank. ``B``'s ``d_out`` is the module's own (``k_proj``/``v_proj`` are narrower under grouped-query attention).

The B matrices live on the adapted blocks (``...layers.{i}.vlora.B.{type}``) and are saved in
``vict_trainable.safetensors`` with the connector. Gradient checkpointing would recompute the blocks after ``bind`` has
left, without the deltas: it is not supported with this method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vict.connectors.base import HAS_IMAGE
from vict.connectors.vlora_generator import VLORA_A, VLoRAGenerator, WeightShapes
from vict.methods.base import Method, decoder_body, switched
from vict.registry import register_method
from vict.settings import help_field, raise_problems

if TYPE_CHECKING:
    from vict.connectors.base import Connector, VisionInput

__all__ = ["WEIGHT_TYPES", "VLoRAMethod", "VLoRASettings", "low_rank_delta"]

WEIGHT_TYPES: dict[str, str] = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "m": "mlp",
}
"""Weight type -> the module of a LLaMA block whose output gets the delta (``m``: the whole MLP, from its input)."""


@dataclass
class VLoRASettings:
    """VLoRA's deltas: which blocks, which weights, their rank and scale."""

    rank: int = help_field("rank r of the perceptual weights (A: d_in x r per image, B: d_out x r)", default=64)
    alpha: float = help_field(
        "scale numerator: the delta is (alpha / rank) (x A) Bᵀ (the reference: 64)", default=64.0
    )
    every: int = help_field(
        "adapt the LLM blocks i with (i + 1) % every == 0 (the reference: 4, 8 of LLaMA-7B's 32)", default=4
    )
    weight_types: list[str] = help_field(
        "the weights that get a delta: q, k, v, o (attention projections), m (the MLP, a d x d delta from its input)",
        default_factory=lambda: list(WEIGHT_TYPES),
    )

    def __post_init__(self) -> None:
        problems = []
        if self.rank < 1:
            problems.append(f"method.rank={self.rank}: must be >= 1")
        if not self.alpha > 0:
            problems.append(f"method.alpha={self.alpha}: must be > 0")
        if self.every < 1:
            problems.append(f"method.every={self.every}: must be >= 1 (1: every block)")
        unknown = [t for t in self.weight_types if t not in WEIGHT_TYPES]
        if unknown or not self.weight_types or len(set(self.weight_types)) != len(self.weight_types):
            problems.append(
                f"method.weight_types={self.weight_types}: list each of {list(WEIGHT_TYPES)} at most once, at least one"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        raise_problems(problems, "invalid VLoRA settings")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def low_rank_delta(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale · (x A) Bᵀ`` per row: ``x (n, L, d_in)``, ``a (n, d_in, r)``, ``b (d_out, r)`` -> ``(n, L, d_out)``."""
    return scale * (torch.bmm(x, a) @ b.t())


class BlockDelta(nn.Module):
    """The B matrices of one adapted block (``B[type]``: ``(d_out, r)``, zero-initialised) and, during ``bind``, the
    A matrices of the rows of the call (``a[type]``: ``(b, d_in, r)``)."""

    def __init__(self, outputs: dict[str, int], rank: int, scale: float) -> None:
        super().__init__()
        self.B = nn.ParameterDict({kind: nn.Parameter(torch.zeros(d_out, rank)) for kind, d_out in outputs.items()})
        self.scale = scale
        self.a: dict[str, torch.Tensor] = {}
        self.enabled = True

    def hook(self, kind: str) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]:
        """A forward hook adding type ``kind``'s delta of the module's input to its output."""

        def add_delta(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            a = self.a.get(kind)
            if a is None or not self.enabled:
                return None
            x = args[0]
            if a.shape[0] != x.shape[0]:  # rows expanded by generate (beams, num_return_sequences)
                if x.shape[0] % a.shape[0]:
                    raise ValueError(f"vlora: A matrices for {a.shape[0]} rows cannot serve a batch of {x.shape[0]}")
                a = a.repeat_interleave(x.shape[0] // a.shape[0], dim=0)
            b = self.B[kind]
            delta = low_rank_delta(x.to(b.dtype), a.to(b.dtype), b, self.scale)
            return output + delta.to(output.dtype)

        return add_delta


class VLoRAMethod(Method):
    name = "vlora"
    description = "VLoRA's perceptual weights: no visual tokens, per-image low-rank deltas of the LLM's weights"
    trains = "the shared B matrices of the adapted blocks, the weights generator (connector) and the extra queries"
    settings_class = VLoRASettings
    default_connector = "vlora_generator"
    markers = (".vlora.",)

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self._deltas: list[BlockDelta] = []
        self._shapes: WeightShapes | None = None

    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        s = self.settings
        blocks = getattr(decoder_body(llm), "layers", None)
        if blocks is None or not all(_has(b, path) for b in blocks for path in WEIGHT_TYPES.values()):
            raise ValueError(
                f"method.type='vlora' adapts LLaMA-style decoder blocks (layers[i].self_attn.q/k/v/o_proj and "
                f"layers[i].mlp), and {type(llm).__name__} has none; use a LLaMA-family LLM or another method"
            )
        if s.every > len(blocks):
            raise ValueError(
                f"method.every={s.every}: the LLM has only {len(blocks)} blocks, so no block would be adapted; "
                f"use 1..{len(blocks)}"
            )
        d = llm.get_input_embeddings().weight.shape[1]
        inputs, outputs = {}, {}
        for kind in s.weight_types:
            if kind == "m":  # the MLP maps d -> d
                inputs[kind], outputs[kind] = d, d
            else:
                weight = blocks[0].get_submodule(WEIGHT_TYPES[kind]).weight
                outputs[kind], inputs[kind] = weight.shape
        adapted = [i for i in range(len(blocks)) if (i + 1) % s.every == 0]
        device = llm.get_input_embeddings().weight.device
        self._deltas = []
        for i in adapted:
            delta = BlockDelta(outputs, s.rank, s.scale).to(device)
            blocks[i].vlora = delta
            for kind in s.weight_types:
                blocks[i].get_submodule(WEIGHT_TYPES[kind]).register_forward_hook(delta.hook(kind))
            self._deltas.append(delta)
        self._shapes = WeightShapes(blocks=len(adapted), inputs=inputs, rank=s.rank)
        return llm

    def connect(self, connector: Connector) -> None:
        if not isinstance(connector, VLoRAGenerator):
            raise ValueError(
                f"method.type='vlora' reads per-image A matrices from connector.type='vlora_generator' (its default), "
                f"got connector.type={connector.name!r}; drop connector.type or set it to vlora_generator"
            )
        if self._shapes is None:
            raise RuntimeError("vlora: apply(llm, vpg) has not run")
        connector.build_heads(self._shapes)

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any]:
        # Every block of the tiny LLaMA (the reference adapts every 4th of 32), all five weight types, a rank and a
        # generator scaled down with the model; the rate of the other zero-initialised deltas here (docs/tuning.md).
        return {
            "settings": {"rank": 8, "alpha": 8.0, "every": 1, "weight_types": list(WEIGHT_TYPES)},
            "lr": 5e-3,
            "connector": {"type": "vlora_generator", "width": 64, "depth": 2, "heads": 4},
            # default preset, seed 0: the preset's connector_lr 1e-2 -> GQA none 36.67, CIDEr 20.2; 1e-3 -> 47.33, 29.7
            "connector_lr": 1e-3,
        }

    # ------------------------------------------------------------------------------------------ forward seam
    def bind(self, vision: VisionInput) -> contextlib.AbstractContextManager:
        a = vision.extras.get(VLORA_A)
        if a is None:
            raise ValueError(
                f"method.type='vlora' needs the A matrices of connector.type='vlora_generator' "
                f"(VisionInput.extras[{VLORA_A!r}]); this connector gave extras {sorted(vision.extras)}"
            )
        rows = next(iter(a.values())).shape[0]
        has_image = vision.extras.get(HAS_IMAGE)
        has_image = torch.ones(rows, dtype=torch.bool) if has_image is None else torch.as_tensor(has_image)
        return self.bound(a, has_image.bool())

    @contextlib.contextmanager
    def bound(self, a: dict[str, torch.Tensor], has_image: torch.Tensor) -> Iterator[None]:
        """Within the context, adapted block ``j`` adds the deltas of ``a[type][:, j]`` (``a[type]``:
        ``(b, k, d_in, r)``) to the rows of every LLM call; rows with ``has_image (b,)`` false get none."""
        if self._shapes is None:
            raise RuntimeError("vlora: apply(llm, vpg) has not run")
        try:
            for j, delta in enumerate(self._deltas):
                for kind, per_block in a.items():
                    keep = has_image.to(per_block.device, per_block.dtype)[:, None, None]
                    delta.a[kind] = per_block[:, j] * keep
            yield
        finally:
            for delta in self._deltas:
                delta.a = {}

    def delta_disabled(self, llm: nn.Module) -> contextlib.AbstractContextManager:
        return switched(self._deltas, False)


def _has(block: nn.Module, path: str) -> bool:
    try:
        module = block.get_submodule(path)
    except AttributeError:
        return False
    return path == "mlp" or isinstance(getattr(module, "weight", None), torch.Tensor)


register_method(VLoRAMethod)
