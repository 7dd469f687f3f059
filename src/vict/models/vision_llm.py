"""``VisionLLM``: composition only. VPG -> connector -> LLM, with the method's delta inside the LLM.

``vpg`` computes features of the images; the ``connector`` (``vict.connectors``) turns them into a ``VisionInput``:
visual tokens for the prompt's image slots (the collator writes ``IMAGE_SLOT_ID`` at ``num_visual_tokens``
consecutive positions of each row; the model embeds the text with those ids mapped to the pad id and
``masked_scatter``s the tokens ``(b, n_visual, d_llm)`` into exactly those rows) and, for some methods, extras the
method consumes while the LLM runs. The ``method`` (``vict.methods``) decides what changes inside the frozen LLM,
what trains (with the connector and the VPG's extra queries) and how its delta is saved.

The parts are built outside ``__init__``: ``VisionLLM.compose`` builds the connector and applies the method
(seeded), and accepts a connector built elsewhere (e.g. a projection initialised from a given matrix).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from vict.checkpoint import MANIFEST, atomic_directory, check_checkpoint, load_tensors, save_tensors
from vict.connectors.base import HAS_IMAGE, Connector, VisionFeatures, VisionInput
from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
from vict.methods.base import LLMInputs, Method
from vict.models import trainable
from vict.models.summary import parameter_table
from vict.models.vpg import VisualPromptGenerator, VPGSpec
from vict.registry import ConnectorSpec, MethodSpec, get_connector, get_method
from vict.settings import SettingsError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
TRAINABLE_FILE = "vict_trainable.safetensors"
CONFIG_FORMAT = 2
"""Version of ``config.json``: 1 was vict 0.1.0's (``peft`` and ``projection_shape`` fields), read and upgraded."""
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class VisionLLMConfig:
    """The resolved description of a ``VisionLLM``, saved as a checkpoint's ``config.json``.

    Attributes:
        vpg_source: HF BLIP-2 directory / hub id, or LAVIS ``.pth`` path, of the frozen VPG.
        llm_source: HF directory or hub id of the frozen causal LM (``AutoModelForCausalLM``).
        vpg_format: ``"hf"`` or ``"lavis"``.
        num_extra_queries: trainable queries appended to the VPG's original ones.
        method: the method (``MethodSpec``: ``{"type": "lora", "r": 8, ...}`` in JSON).
        connector: the connector (``ConnectorSpec``); empty ``type`` means the method's default, resolved when the
            model is built, so a saved config always names it.
        frozen_dtype: dtype of the frozen vision tower and LLM base (``float32``, ``bfloat16``, ``float16``);
            the Q-Former, queries, connector and method delta are always float32.
        logits_on_labelled_only: with labels, apply the LM head only at target positions (see ``forward``).
        seed: seed of the trainable parts' initialisation (extra queries, connector, method delta).
        vpg_options: LAVIS-only extras of the VPG (Blip2 config, eva ViT path, ln_vision eps, processor).
        llm_model_type: ``config.model_type`` of the LLM (informational).
        vict_version: version of ``vict`` that wrote the config.
        format: version of this file's layout (``CONFIG_FORMAT``).
    """

    vpg_source: str
    llm_source: str
    vpg_format: str = "hf"
    num_extra_queries: int = 0
    method: MethodSpec = field(default_factory=MethodSpec)
    connector: ConnectorSpec = field(default_factory=ConnectorSpec)
    frozen_dtype: str = "float32"
    logits_on_labelled_only: bool = True
    seed: int = 0
    vpg_options: dict[str, Any] = field(default_factory=dict)
    llm_model_type: str = ""
    vict_version: str = ""
    format: int = CONFIG_FORMAT

    def __post_init__(self) -> None:
        if isinstance(self.method, dict):
            self.method = MethodSpec.from_dict(self.method)
        if isinstance(self.connector, dict):
            self.connector = ConnectorSpec.from_dict(self.connector, default_type="")
        problems = []
        if self.vpg_format not in ("hf", "lavis"):
            problems.append(f"vpg_format={self.vpg_format!r}: use 'hf' (HF BLIP-2 dir / hub id) or 'lavis' (.pth)")
        if self.frozen_dtype not in DTYPES:
            problems.append(f"frozen_dtype={self.frozen_dtype!r}: use one of {list(DTYPES)}")
        if self.num_extra_queries < 0:
            problems.append(f"num_extra_queries={self.num_extra_queries}: must be >= 0")
        if problems:
            raise ValueError("invalid VisionLLMConfig:\n  " + "\n  ".join(problems))

    def vpg_spec(self) -> VPGSpec:
        """The ``VPGSpec`` that rebuilds the frozen VPG with this config's extra queries."""
        return VPGSpec(
            source=self.vpg_source,
            format=self.vpg_format,
            num_extra_queries=self.num_extra_queries,
            **self.vpg_options,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, MethodSpec | ConnectorSpec) else value
        return json.loads(json.dumps(out))  # plain, deep-copied data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionLLMConfig:
        data = _upgrade_format_1(dict(data))
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VisionLLMConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> VisionLLMConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; a VICT checkpoint directory holds {CONFIG_FILE}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        try:
            return cls.from_dict(data)
        except SettingsError as err:
            raise ValueError(f"{path}: {err}") from err


def _upgrade_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """vict 0.1.0's ``config.json``: ``peft`` (every PEFT setting, whatever the type) -> ``method`` (the type's own
    settings only); ``projection_shape`` and ``num_visual_tokens`` were derived and are dropped."""
    if "peft" not in data:
        return data
    peft = dict(data.pop("peft") or {})
    data.pop("projection_shape", None)
    data.pop("num_visual_tokens", None)
    kind = peft.pop("type", "lora")
    own = set(get_method(kind).settings_class.__dataclass_fields__)
    data["method"] = {"type": kind, **{k: v for k, v in peft.items() if k in own}}
    data["connector"] = {"type": "qformer_tokens"}
    data["format"] = 1
    return data


LEGACY_TENSOR_NAMES = {"projection.": "connector.projection."}
"""Renames of ``vict_trainable.safetensors`` keys written by format-1 checkpoints."""


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the global torch RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class VisionLLM(nn.Module):
    """Frozen VPG + connector + frozen causal LM with a method's delta.

    Attributes:
        vpg: the ``VisualPromptGenerator`` (frozen, except its extra queries).
        connector: the ``Connector`` (how vision enters the LLM; trainable, float32).
        llm: the causal LM as the method left it (e.g. a ``peft.PeftModelForCausalLM``).
        method: the ``Method`` (not a module: its parameters live inside ``llm`` or ``vpg``).
        tokenizer: the LLM's tokenizer (``None`` only for meta-device footprint models).
        config: the ``VisionLLMConfig`` (saved as ``config.json``).
    """

    def __init__(
        self,
        vpg: VisualPromptGenerator,
        connector: Connector,
        llm: nn.Module,
        method: Method,
        tokenizer: Any,
        config: VisionLLMConfig,
    ) -> None:
        """Wire already built parts (``compose`` builds the connector and applies the method); mark what trains."""
        super().__init__()
        if vpg.num_extra_queries != config.num_extra_queries:
            raise ValueError(
                f"VPG has {vpg.num_extra_queries} extra queries but config.num_extra_queries="
                f"{config.num_extra_queries}"
            )
        self.vpg = vpg
        self.connector = connector
        self.llm = llm
        self.method = method
        self.tokenizer = tokenizer
        self.config = config
        spec = vpg.spec
        if spec.format in ("hf", "lavis"):
            # The VPG knows where its frozen weights came from; the config (and so every checkpoint) records it.
            config.vpg_source, config.vpg_format = spec.source, spec.format
            config.vpg_options = {} if spec.format == "hf" else _lavis_options(spec)
        config.llm_model_type = str(getattr(self.base_llm.config, "model_type", ""))
        if not config.vict_version:
            from vict import __version__

            config.vict_version = __version__
        if tokenizer is not None and tokenizer.pad_token_id is None:
            # Padding needs an id; LLaMA-style tokenizers have none, so pad with eos (masked out anyway).
            tokenizer.pad_token = tokenizer.eos_token
            logger.info("tokenizer had no pad token; using eos %r for padding", tokenizer.eos_token)
        trainable.mark_trainable(self, self.is_trainable)
        self._cast_trainable_fp32()
        self.train(False)
        logger.info("%s", parameter_table(self.trainable_parameters_by_part(), title="VisionLLM parameters by part"))

    @classmethod
    def compose(
        cls,
        vpg: VisualPromptGenerator,
        llm: nn.Module,
        tokenizer: Any,
        config: VisionLLMConfig,
        connector: Connector | None = None,
    ) -> VisionLLM:
        """Build the connector (unless given), apply the method to the bare ``llm`` and connect the two
        (``Method.connect``), all seeded by ``config.seed + 1`` (independent of the extra queries' stream, seeded by
        ``config.seed``), then compose."""
        method = get_method(config.method.type)(config.method.settings)
        config.connector = config.connector.resolved(config.method)
        embeddings = llm.get_input_embeddings()
        with seeded(config.seed + 1):
            if connector is None:
                connector_class = get_connector(config.connector.type)
                connector = connector_class(
                    config.connector.settings, vpg, embeddings.embedding_dim, device=embeddings.weight.device
                )
            llm = method.apply(llm, vpg)
            method.connect(connector)
        return cls(vpg, connector, llm, method, tokenizer, config)

    # ------------------------------------------------------------------------------------------ structure
    @property
    def base_llm(self) -> nn.Module:
        """The underlying ``*ForCausalLM`` (the method's layers injected in place, if any)."""
        return self.method.base_model(self.llm)

    def is_trainable(self, name: str) -> bool:
        """The single trainable predicate: what trains and what a checkpoint saves. By default the extra queries
        and the connector; the method adds its own parameters (and may claim others, e.g. the Q-Former)."""
        default = name == "vpg.extra_queries" or (
            name.startswith("connector.") and self.connector.is_trainable(name[len("connector.") :])
        )
        return self.method.is_trainable(name, default)

    def part_of(self, name: str) -> str:
        """The part a parameter belongs to: ``vision``, ``qformer`` (with the original queries),
        ``extra_queries``, ``connector``, ``llm`` (the base LLM), ``method`` (what the method added), ``other``."""
        if self.method.owns(name):
            return "method"
        if name == "vpg.extra_queries":
            return "extra_queries"
        for prefix, part in (
            ("connector.", "connector"),
            ("llm.", "llm"),
            ("vpg.vision_model.", "vision"),
            ("vpg.qformer.", "qformer"),
            ("vpg.query_tokens", "qformer"),
        ):
            if name.startswith(prefix):
                return part
        return "other"

    def _cast_trainable_fp32(self) -> None:
        for name, param in self.named_parameters():
            if self.is_trainable(name) and param.dtype != torch.float32:
                param.data = param.data.float()

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens per image: how many ``IMAGE_SLOT_ID`` each row must hold (may be 0)."""
        return self.connector.num_tokens(self.vpg)

    @property
    def image_processor(self) -> Any:
        """The VPG's image processor (the right size, mean and std for its checkpoint)."""
        return self.vpg.image_processor

    @property
    def device(self) -> torch.device:
        return self.base_llm.get_input_embeddings().weight.device

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        if tok is not None and tok.pad_token_id is not None:
            return int(tok.pad_token_id)
        return int(getattr(self.base_llm.config, "pad_token_id", None) or 0)

    def train(self, mode: bool = True) -> VisionLLM:
        """Train mode reaches only modules that own trainable parameters or that the method added (LoRA's
        dropout); the frozen vision tower, Q-Former and LLM base always stay in eval mode (no dropout)."""
        if not hasattr(self, "method"):
            return super().train(mode)
        trainable.set_frozen_eval(self, mode, self.method.owns)
        return self

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Every module in eval mode inside the block, the train mode restored after it. A model already wholly in
        eval mode (every generation call of an engine) is left as it is: setting every flag twice per call took
        about as long as a decoding step of the miniature (~1.4 ms against ~0.3 ms for this check)."""
        if not any(module.training for module in self.modules()):
            yield
            return
        was_training = self.training
        self.train(False)
        try:
            yield
        finally:
            self.train(was_training)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the LLM's activations in the backward pass (non-reentrant, so gradients still reach the
        visual tokens through the frozen layers): less memory for a 7B LLM, same gradients."""
        self.base_llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def trainable_parameters_by_part(self) -> dict[str, Any]:
        """``{"parts": {part: {"trainable": n, "frozen": n}}, "trainable": n, "frozen": n, "total": n}``."""
        return trainable.count_by_part(self.named_parameters(), self.is_trainable, self.part_of)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached copies of every trainable parameter (the single predicate), keyed by full name."""
        return trainable.trainable_state_dict(self, self.is_trainable)

    # --------------------------------------------------------------------------------------------- inputs
    def vision_features(self, pixel_values: torch.Tensor, training: bool = False) -> VisionFeatures:
        """The features of ``pixel_values (b, 3, S, S)`` worth caching per image: during training (``training``)
        the deepest level computed by frozen parameters only, otherwise everything before the connector's own
        layers (for the Q-Former connector: the Q-Former outputs). Feed them back as ``features=``."""
        level = self.connector.cache_level(self.vpg, training)
        return VisionFeatures(level, self.connector.features(self.vpg, pixel_values, level))

    def encode_images(
        self, pixel_values: torch.Tensor | None = None, features: VisionFeatures | None = None
    ) -> VisionInput:
        """The connector's ``VisionInput`` (tokens ``(b, n_visual, d_llm)`` in the LLM's dtype, and extras), from
        ``pixel_values (b, 3, S, S)`` or from ``features`` (``vision_features``)."""
        if features is None:
            if pixel_values is None:
                raise ValueError("VisionLLM needs pixel_values (b, 3, S, S) or cached features (vision_features)")
            features = VisionFeatures("pixels", pixel_values)
        vision = self.connector(self.vpg, features)
        vision.tokens = vision.tokens.to(self.base_llm.get_input_embeddings().weight.dtype)
        return vision

    def embed_inputs(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``(b, L, d_llm)`` with the slot rows replaced by ``visual_tokens (b, n_visual, d_llm)``.

        Every row of ``input_ids (b, L)`` must hold exactly ``n_visual`` consecutive ``IMAGE_SLOT_ID`` entries
        (none when the connector gives no tokens), or none at all: a text-only row, whose visual tokens are
        dropped (``text_only_rows``).
        """
        slots = input_ids == IMAGE_SLOT_ID
        counts = slots.sum(dim=1)
        n = visual_tokens.shape[1]
        bad = ((counts != n) & (counts != 0)).nonzero().flatten().tolist()
        if bad:
            got = ", ".join(f"row {i}: {int(counts[i])}" for i in bad[:8])
            raise ValueError(
                f"each row of input_ids must contain exactly {n} image slots (IMAGE_SLOT_ID={IMAGE_SLOT_ID}, the "
                f"model's num_visual_tokens) or none (a text-only row), got {got}. Build batches with "
                f"VictCollator(num_visual_tokens=model.num_visual_tokens), one '<image>' per prompt."
            )
        if visual_tokens.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"{visual_tokens.shape[0]} images for {input_ids.shape[0]} sequences: give one image per row"
            )
        if n:
            first = slots.int().argmax(dim=1)
            span = slots.shape[1] - slots.int().flip(1).argmax(dim=1) - first
            split = ((span != n) & (counts > 0)).nonzero().flatten().tolist()
            if split:
                raise ValueError(
                    f"the {n} image slots must be consecutive (one '<image>' per prompt); rows {split[:8]} have "
                    "them spread out. Build batches with VictCollator."
                )
        embedding = self.base_llm.get_input_embeddings()
        ids = input_ids.masked_fill(slots, self.pad_token_id)
        vocab = embedding.num_embeddings
        if ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
            raise ValueError(
                f"input_ids hold ids outside the LLM vocabulary [0, {vocab}) (min {int(ids.min())}, max "
                f"{int(ids.max())}); tokenize with this model's tokenizer (model.tokenizer)"
            )
        embeds = embedding(ids)
        if not n:
            return embeds
        with_image = counts > 0
        if not bool(with_image.all()):
            visual_tokens = visual_tokens[with_image]
        return embeds.masked_scatter(slots.unsqueeze(-1), visual_tokens.to(embeds.dtype))

    def _llm_inputs(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None,
        features: VisionFeatures | None,
    ) -> tuple[LLMInputs, VisionInput]:
        """Step 1 of every LLM call: vision through the connector, tokens into the text embeddings, method hook."""
        vision = self.encode_images(pixel_values, features)
        embeds = self.embed_inputs(input_ids, vision.tokens)
        if vision.tokens.shape[1]:  # rows without image slots are text only (methods may route them apart)
            vision.extras.setdefault(HAS_IMAGE, (input_ids == IMAGE_SLOT_ID).any(dim=1))
        inputs = LLMInputs(embeds, attention_mask, self.position_ids(attention_mask), labels)
        return self.method.prepare(inputs, vision), vision

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the LLM when its frozen base is bf16/fp16: the fp32 trainable deltas (LoRA,
        adaption prompts) are cast per op, their master weights and gradients stay fp32."""
        dtype = DTYPES[self.config.frozen_dtype]
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @staticmethod
    def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
        """Positions counting only attended tokens (as ``generate`` does), so left padding shifts nothing."""
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    # -------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        features: VisionFeatures | None = None,
        logits_on_labelled_only: bool | None = None,
    ) -> CausalLMOutputWithPast:
        """Loss and logits of a batch.

        Args:
            pixel_values: ``(b, 3, S, S)`` images (or pass cached ``features`` from ``vision_features``).
            input_ids: ``(b, L)`` token ids with ``num_visual_tokens`` ``IMAGE_SLOT_ID`` slots per row.
            attention_mask: ``(b, L)``, 1 for real tokens (slots included), 0 for padding.
            labels: ``(b, L)`` target ids, ``IGNORE_INDEX`` (-100) everywhere except target tokens. The loss is
                the mean cross entropy of predicting ``labels[:, t + 1]`` from position ``t``.
            logits_on_labelled_only: overrides ``config.logits_on_labelled_only``. When true and ``labels`` are
                given, the LM head runs only at the ``n_tgt`` positions whose shifted label is not -100 and
                ``logits`` has shape ``(n_tgt, vocab)`` (rows in batch-major order of
                ``labels[:, 1:] != -100``); this saves the ``(b, L, vocab)`` logits tensor and gives the same loss.
                Otherwise ``logits`` is ``(b, L', vocab)`` (``L' = L`` unless the method adds positions).

        Returns:
            ``CausalLMOutputWithPast(loss, logits)`` (``loss`` is ``None`` without labels).
        """
        if input_ids is None:
            raise ValueError("VisionLLM.forward needs input_ids (b, L) with image slots")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs, vision = self._llm_inputs(pixel_values, input_ids, attention_mask, labels, features)
        labels = inputs.labels
        base = self.base_llm
        only_labelled = (
            self.config.logits_on_labelled_only if logits_on_labelled_only is None else bool(logits_on_labelled_only)
        )
        call = {
            "inputs_embeds": inputs.embeds,
            "attention_mask": inputs.attention_mask,
            "position_ids": inputs.position_ids,
            "use_cache": False,
        }
        with self.method.bind(vision), self._autocast():
            if labels is not None and only_labelled and _plain_lm_head(base):
                targets = labels[:, 1:]
                keep = targets != IGNORE_INDEX
                hidden = getattr(base, base.base_model_prefix)(**call)[0]
                logits = base.get_output_embeddings()(hidden[:, :-1][keep])
                return CausalLMOutputWithPast(loss=_mean_ce(logits, targets[keep]), logits=logits)
            logits = self.llm(**call).logits
        loss = None
        if labels is not None:
            loss = _mean_ce(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    # ----------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_ids(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int = 32,
        num_beams: int = 1,
        features: VisionFeatures | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """New token ids ``(b, n_new)`` for a left-padded prompt batch with image slots (KV-cached decoding
        from ``inputs_embeds``; greedy unless ``do_sample=True``; stops at the tokenizer's eos). Extra
        ``kwargs`` go to ``transformers``' ``generate`` (e.g. ``eos_token_id``, ``length_penalty``)."""
        if attention_mask is not None and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError(
                "generation needs left-padded prompts (the last position of every row must be attended); "
                "encode prompts with padding_side='left' (VictCollator.encode_prompts does)"
            )
        with self.eval_mode():
            inputs, vision = self._llm_inputs(pixel_values, input_ids, attention_mask, None, features)
            tok = self.tokenizer
            kwargs.setdefault("do_sample", False)
            kwargs.setdefault("eos_token_id", None if tok is None else tok.eos_token_id)
            kwargs.setdefault("pad_token_id", self.pad_token_id)
            with self.method.bind(vision), self._autocast():
                out = self.llm.generate(
                    inputs_embeds=inputs.embeds,
                    attention_mask=inputs.attention_mask,
                    max_new_tokens=max_new_tokens,
                    num_beams=num_beams,
                    **kwargs,
                )
        # With only inputs_embeds, decoder-only generate returns just the new tokens.
        return out

    @torch.no_grad()
    def prefill(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        features: VisionFeatures | None = None,
    ) -> Any:
        """The key/value cache (a ``transformers`` ``Cache``) of unpadded prompt prefixes ``input_ids (b, P)``, with
        their images' slots, as the LLM (with the method's delta, bound to these images) computes it: what
        ``generate_ids(..., cache=...)`` continues from. Only the decoder body runs (no LM head)."""
        with self.eval_mode():
            mask = torch.ones_like(input_ids)
            inputs, vision = self._llm_inputs(pixel_values, input_ids, mask, None, features)
            base = self.base_llm
            with self.method.bind(vision), self._autocast():
                out = getattr(base, base.base_model_prefix)(
                    inputs_embeds=inputs.embeds,
                    attention_mask=inputs.attention_mask,
                    position_ids=inputs.position_ids,
                    use_cache=True,
                )
        return out.cache

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int = 32,
        num_beams: int = 1,
        **kwargs: Any,
    ) -> list[str]:
        """Decoded new text per item (special tokens skipped, stripped); see ``generate_ids`` for inputs."""
        ids = self.generate_ids(pixel_values, input_ids, attention_mask, max_new_tokens, num_beams, **kwargs)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    # ---------------------------------------------------------------------------------------- save / load
    def checkpoint_files(self) -> set[str]:
        """The files ``save_pretrained`` writes besides the tokenizer's: ``config.json``,
        ``vict_trainable.safetensors``, ``MANIFEST.json`` and the method's own (peft methods: ``adapter/...``)."""
        return {CONFIG_FILE, TRAINABLE_FILE, MANIFEST, *self.method.checkpoint_files()}

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``config.json``, ``vict_trainable.safetensors`` (every trainable tensor the method does not store
        itself: extra queries, connector, ...), the method's own files (peft methods: the adapter in peft's format
        under ``adapter/``, loadable by ``peft.PeftModel.from_pretrained(bare_llm, dir/"adapter")``) and the
        tokenizer files, atomically (temporary sibling folder, then rename)."""
        save_directory = Path(save_directory)
        with atomic_directory(save_directory, manifest=True) as tmp:
            self.config.save(tmp / CONFIG_FILE)
            own = {n: t for n, t in self.trainable_state_dict().items() if not self.method.saves(n)}
            save_tensors(own, tmp / TRAINABLE_FILE, metadata={"format": "pt", "vict": self.config.vict_version})
            self.method.save(self.llm, tmp)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
        return save_directory

    @torch.no_grad()
    def load_trainable(
        self, directory: str | Path, strict: bool = True, renames: dict[str, str] | None = None
    ) -> dict[str, list[str]]:
        """Load the trainable tensors of a checkpoint folder (``vict_trainable.safetensors`` + the method's files).

        Args:
            directory: a ``save_pretrained`` folder (a run's ``final/`` or ``checkpoints/step-N``).
            strict: the folder must hold exactly this model's trainable tensors (its own checkpoint). Otherwise
                (``train.init_from``, a checkpoint of an earlier stage) trainable parameters missing from the folder
                keep their values; tensors with no trainable parameter of the same name are an error either way.
            renames: key prefix renames applied to ``vict_trainable.safetensors`` (older layouts).

        Returns:
            ``{"loaded": [names], "kept": [trainable names not in the folder]}``.
        """
        directory = Path(directory)
        check_checkpoint(directory)  # a damaged file is named before anything reads it
        path = directory / TRAINABLE_FILE
        state = load_tensors(path)
        for old, new in (renames or {}).items():
            state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
        params = dict(self.named_parameters())
        wanted = {n for n in params if self.is_trainable(n)}
        expected = {n for n in wanted if not self.method.saves(n)}
        unexpected = sorted(set(state) - expected)
        missing = sorted(expected - set(state))
        if unexpected or (strict and missing):
            frozen = [n for n in unexpected if n in params]
            raise ValueError(
                f"{path}: does not fit this model ({self.method.describe()}, connector "
                f"{self.config.connector.type}): "
                + (f"tensors that are not trainable parameters here {unexpected[:8]}; " if unexpected else "")
                + (f"(of these, {frozen[:8]} are frozen in this model); " if frozen else "")
                + (f"trainable parameters missing from the file {missing[:8]}; " if strict and missing else "")
                + "was it written by a model with another config?"
            )
        wrong = [
            f"{name} has shape {tuple(value.shape)}, the model expects {tuple(params[name].shape)}"
            for name, value in state.items()
            if tuple(value.shape) != tuple(params[name].shape)
        ]
        if wrong:  # every mismatch at once (a changed query count resizes more than one tensor)
            raise ValueError(f"{path}: " + "; ".join(wrong))
        for name, value in state.items():
            params[name].copy_(value)
        loaded = set(state) | self.method.load(self.llm, directory, strict=strict)
        bad = [n for n in sorted(loaded) if n in params and not bool(torch.isfinite(params[n]).all())]
        if bad:
            raise ValueError(
                f"{directory}: non-finite weights (nan or inf) in {bad[:8]}"
                + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
                + ": the run that wrote them diverged; use an earlier checkpoints/step-* or retrain with a lower lr"
            )
        return {"loaded": sorted(loaded), "kept": sorted(wanted - loaded)}

    @classmethod
    def from_config(cls, config: VisionLLMConfig, tokenizer: Any = None) -> VisionLLM:
        """Build a fresh model from its sources: the VPG from ``config.vpg_source``, the LLM (and, unless
        given, its tokenizer) from ``config.llm_source``; trainable parts initialised from ``config.seed``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = DTYPES[config.frozen_dtype]
        vpg = VisualPromptGenerator.from_spec(config.vpg_spec(), dtype=dtype, seed=config.seed)
        llm = AutoModelForCausalLM.from_pretrained(config.llm_source, dtype=dtype)
        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(config.llm_source)
        return cls.compose(vpg, llm, tokenizer, config)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path,
        frozen_dtype: str | None = None,
        vpg_source: str | Path | None = None,
        llm_source: str | Path | None = None,
    ) -> VisionLLM:
        """Rebuild a saved model: frozen parts from the sources named in ``config.json``, trainable parts from
        ``vict_trainable.safetensors`` and the method's files, tokenizer from the checkpoint.

        ``frozen_dtype`` overrides the saved one (e.g. ``"bfloat16"`` on a GPU); ``vpg_source``/``llm_source``
        point at the frozen checkpoints when they have moved (another machine, another cache directory).
        """
        from transformers import AutoTokenizer

        checkpoint_dir = Path(checkpoint_dir)
        check_checkpoint(checkpoint_dir)
        config = VisionLLMConfig.load(checkpoint_dir / CONFIG_FILE)
        if frozen_dtype is not None:
            config.frozen_dtype = frozen_dtype
        if vpg_source is not None:
            config.vpg_source = str(vpg_source)
        if llm_source is not None:
            config.llm_source = str(llm_source)
        config.__post_init__()
        for name in ("vpg_source", "llm_source"):
            source = getattr(config, name)
            if Path(source).is_absolute() and not Path(source).exists():
                raise FileNotFoundError(
                    f"{checkpoint_dir / CONFIG_FILE}: {name} {source} does not exist (moved or on another "
                    f"machine?); pass VisionLLM.from_pretrained(..., {name}=NEW_PATH)"
                )
        renames = LEGACY_TENSOR_NAMES if config.format < 2 else None
        config.format = CONFIG_FORMAT
        model = cls.from_config(config, tokenizer=AutoTokenizer.from_pretrained(str(checkpoint_dir)))
        model.load_trainable(checkpoint_dir, strict=True, renames=renames)
        return model


def _lavis_options(spec: VPGSpec) -> dict[str, Any]:
    return {
        "blip2_config": spec.blip2_config,
        "lavis_vision_path": spec.lavis_vision_path,
        "ln_vision_eps": spec.ln_vision_eps,
        "image_processor": spec.image_processor,
    }


def _plain_lm_head(base: nn.Module) -> bool:
    # Some families post-process logits after the head (Gemma-2 soft-capping, Cohere logit_scale); for them the
    # labelled-only shortcut would change the loss, so the full forward runs instead.
    cfg = getattr(base, "config", None)
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        return False
    return hasattr(base, "base_model_prefix") and base.get_output_embeddings() is not None


def _mean_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy over targets != -100 (float32); 0 with a gradient path when there are none."""
    if targets.numel() == 0 or not bool((targets != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
