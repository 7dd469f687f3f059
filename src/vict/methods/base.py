"""The method contract: how a method modifies the frozen LLM, what it trains, how it saves and loads.

A method is one folder, ``vict/methods/<name>/``, holding its settings dataclass and a ``Method`` subclass, and
registering the class with one line (``register_method(MyMethod)``). ``VisionLLM`` asks its method, and nothing
else, about the LLM side:

- ``apply(llm, vpg)``: inject the delta into the frozen LLM (and, if the method wants, the frozen VPG);
- ``connect(connector)``: after ``apply``, tell the connector what it must produce for the method (VLoRA's
  generator: the shapes of the A matrices of the adapted blocks);
- ``owns(name)`` / ``is_trainable(name, default)``: the parameters (and parameter-free modules, such as LoRA's
  dropout) the method adds, and the method's say in the model's single trainable predicate;
- ``prepare(inputs, vision)`` and ``bind(vision)``: hooks around every LLM call (training forward and generation),
  for methods that need more than visual tokens (a modality token, per-image weight deltas);
- ``saves(name)`` / ``save`` / ``load`` / ``checkpoint_files``: parameters the method stores in its own format
  (peft's adapter folder for the methods peft implements); every other trainable tensor goes to
  ``vict_trainable.safetensors``;
- ``delta_disabled(llm)``: a context in which the LLM computes as it did before ``apply`` (text retention
  compares held-out perplexity with the delta off and on);
- ``stages()``: a recipe of several training stages (each a set of config overrides), chained with
  ``train.init_from``.

Names passed to ``owns``, ``is_trainable`` and ``saves`` are full ``VisionLLM`` parameter or module names
(``llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from vict.connectors.base import Connector, VisionInput


@dataclass
class LLMInputs:
    """What the LLM is called with: ``embeds (b, L, d)``, ``attention_mask (b, L)``, ``position_ids (b, L)`` and,
    in training, ``labels (b, L)`` (-100 outside the target)."""

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None = None


@dataclass(frozen=True)
class Stage:
    """One training stage of a method's recipe.

    Attributes:
        name: folder name of the stage's run (``<train.output_dir>/<name>/``).
        description: one line for the logs and the docs.
        overrides: dotted config overrides of the stage (``{"train.lr": 1e-3}``), or a function of the run config
            returning them (so a stage can scale the user's learning rate).
    """

    name: str
    description: str
    overrides: dict[str, Any] | Callable[[Any], dict[str, Any]] = dataclasses.field(default_factory=dict)

    def overrides_for(self, cfg: Any) -> dict[str, Any]:
        return dict(self.overrides(cfg) if callable(self.overrides) else self.overrides)


class Method:
    """Base class of methods: no delta, nothing of its own to save. See the module docstring for the contract.

    Class attributes:
        name: registry name (``method.type`` in configs).
        description: one line for ``vict methods``.
        trains: one line saying which parameters train (for ``vict methods``).
        settings_class: the settings dataclass (fields documented with ``vict.settings.help_field``).
        default_connector: the connector used when a config does not name one.
        markers: name fragments (``".lora_A."``) of the parameters and modules the method adds; ``owns`` matches
            them against ``"." + name + "."``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    trains: ClassVar[str] = ""
    settings_class: ClassVar[type] = type(None)
    default_connector: ClassVar[str] = "qformer_tokens"
    markers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings if settings is not None else self.settings_class()

    # ----------------------------------------------------------------------------------------------- build
    def apply(self, llm: nn.Module, vpg: nn.Module) -> nn.Module:
        """Inject the method into the frozen ``llm`` (in place or by wrapping it) and return the LLM to call."""
        return llm

    def base_model(self, llm: nn.Module) -> nn.Module:
        """The underlying ``*ForCausalLM`` of what ``apply`` returned (for its config, embeddings and head)."""
        return llm

    def connect(self, connector: Connector) -> None:
        """Called once after ``apply`` (seeded with it): hand the connector what it needs from the method, e.g. the
        shapes of the per-image weights it generates (VLoRA), and refuse a connector the method cannot use. Nothing
        by default."""

    # --------------------------------------------------------------------------------------------- training
    def owns(self, name: str) -> bool:
        """True for a parameter or module that the method added (matched by ``markers``)."""
        dotted = f".{name}."
        return any(marker in dotted for marker in self.markers)

    def is_trainable(self, name: str, default: bool) -> bool:
        """The method's say in the model's trainable predicate. ``default`` is the model's own answer (extra
        queries and the connector train); by default the method adds the parameters it owns."""
        return default or self.owns(name)

    # ------------------------------------------------------------------------------------------ forward seam
    def prepare(self, inputs: LLMInputs, vision: VisionInput) -> LLMInputs:
        """Change the LLM's inputs before a call (e.g. prepend a token); identity by default."""
        return inputs

    def bind(self, vision: VisionInput) -> contextlib.AbstractContextManager:
        """A context active during every LLM call of a batch (e.g. per-image weight deltas); none by default."""
        return contextlib.nullcontext()

    def delta_disabled(self, llm: nn.Module) -> contextlib.AbstractContextManager:
        """A context in which ``llm`` (what ``apply`` returned) computes exactly as the bare LLM did before
        ``apply``: the method's delta switched off, its weights kept (e.g. ``vict.eval.text_retention``).

        The default is a no-op, right for a method that leaves the LLM as it is (``none``); it refuses an ``llm``
        holding parameters the method owns, since such a method changes the LLM and must override this.
        """
        owned = [n for n, _ in llm.named_parameters() if self.owns(f"llm.{n}")]
        if owned:
            raise NotImplementedError(
                f"method {self.name!r} adds parameters to the LLM (e.g. {owned[0]}) but does not say how to switch "
                f"them off: implement {type(self).__name__}.delta_disabled(llm)"
            )
        return contextlib.nullcontext()

    def not_shardable(self) -> str:
        """Why ``vict.training.sharding`` (FSDP) cannot train this method with these settings; ``""``: it can."""
        return ""

    def unsharded_parameters(self, llm: nn.Module) -> list[nn.Parameter]:
        """Frozen LLM parameters that FSDP must leave whole on every process: those a gradient reaches from
        inside a decoder block without passing the block's output (FSDP gathers a block's weights for the backward
        only when the gradient enters through its output). Default: none."""
        return []

    # --------------------------------------------------------------------------------------------- storage
    def checkpoint_files(self) -> frozenset[str]:
        """Files the method writes into a checkpoint folder (relative paths), besides ``vict_trainable.safetensors``."""
        return frozenset()

    def saves(self, name: str) -> bool:
        """True for a trainable parameter that ``save`` stores itself (others go to ``vict_trainable.safetensors``)."""
        return False

    def save(self, llm: nn.Module, directory: Path) -> None:
        """Write the method's own files into ``directory``."""

    def load(self, llm: nn.Module, directory: Path, strict: bool = True) -> set[str]:
        """Load the method's own files from ``directory`` into ``llm``; return the full names loaded.

        ``strict``: every parameter ``saves`` selects must be in the files (a model's own checkpoint); otherwise
        missing files or tensors are allowed (``train.init_from`` a checkpoint of an earlier stage). Tensors the
        model has no place for are an error either way.
        """
        return set()

    # ------------------------------------------------------------------------------------------ recipe, docs
    def stages(self) -> tuple[Stage, ...]:
        """The method's training recipe when it has several stages (each run chained to the previous one with
        ``train.init_from``); ``()`` for one stage."""
        return ()

    @classmethod
    def quickstart_recipe(cls, llm_config: dict[str, Any]) -> dict[str, Any] | None:
        """Settings (``{"settings": {...}, "lr": float}``) of this method in ``vict quickstart``'s miniature, for
        the target LM whose ``config.json`` is ``llm_config``; ``None``: not part of the quickstart.

        Optional keys: ``connector_lr`` and ``num_extra_queries`` (instead of the preset's), ``frozen_llm`` (the
        LLM gets no delta: captions follow the image tokens with no instruction) ``transfer`` (VPGTrans's init: the
        projector starts from the merged converter init) and ``speedup`` (a from-scratch VPG is trained beside the
        row and VPGTrans's speed-up measured against it; at most one method's recipe sets it)."""
        return None

    def describe(self) -> str:
        """One line for ``vict inspect``: the method and its settings."""
        fields = dataclasses.asdict(self.settings) if dataclasses.is_dataclass(self.settings) else {}
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{self.name} {detail}".strip()


def decoder_body(llm: nn.Module) -> nn.Module:
    """The decoder body (``LlamaModel``) of a ``*ForCausalLM``."""
    return getattr(llm, getattr(llm, "base_model_prefix", "model"))


@contextlib.contextmanager
def switched(modules: list[Any], enabled: bool) -> Iterator[None]:
    """Within the block every module's ``enabled`` flag is ``enabled``; each gets its own flag back after it (the
    ``delta_disabled`` of methods whose delta modules carry such a flag)."""
    before = [m.enabled for m in modules]
    try:
        for m in modules:
            m.enabled = enabled
        yield
    finally:
        for m, was in zip(modules, before, strict=True):
            m.enabled = was
