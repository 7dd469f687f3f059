"""``VisionLLM``: composition only. VPG -> Linear(d_qformer, d_llm) -> visual tokens at the image slots -> LLM + PEFT.

The collator writes ``IMAGE_SLOT_ID`` at ``num_visual_tokens`` consecutive positions of each row of
``input_ids``; the model embeds the text with those ids mapped to the pad id and then ``masked_scatter``s the
projected visual tokens ``(b, n_visual, d_llm)`` into exactly those rows of the embedding matrix.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from vict.checkpoint import atomic_directory, load_tensors, save_tensors
from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
from vict.models.summary import parameter_table
from vict.models.vpg import VisualPromptGenerator, VPGSpec
from vict.peft import PeftSettings, apply_peft
from vict.peft.trainable import count_by_part, is_trainable, mark_trainable, set_frozen_eval, trainable_state_dict

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
TRAINABLE_FILE = "vict_trainable.safetensors"
ADAPTER_DIR = "adapter"
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class VisionLLMConfig:
    """The resolved description of a ``VisionLLM``, saved as a checkpoint's ``config.json``.

    Attributes:
        vpg_source: HF BLIP-2 directory / hub id, or LAVIS ``.pth`` path, of the frozen VPG.
        vpg_format: ``"hf"`` or ``"lavis"``.
        llm_source: HF directory or hub id of the frozen causal LM (``AutoModelForCausalLM``).
        num_extra_queries: trainable queries appended to the VPG's original ones.
        peft: the PEFT delta (``PeftSettings``).
        projection_shape: ``[d_qformer, d_llm]`` of the trainable projection.
        num_visual_tokens: visual tokens per image (``n_orig + n_extra``), the collator's slot count.
        frozen_dtype: dtype of the frozen vision tower and LLM base (``float32``, ``bfloat16``, ``float16``);
            the Q-Former, queries, projection and PEFT delta are always float32.
        logits_on_labelled_only: with labels, apply the LM head only at target positions (see ``forward``).
        seed: seed of the trainable parts' initialisation (extra queries, projection, PEFT).
        vpg_options: LAVIS-only extras of the VPG (Blip2 config, eva ViT path, ln_vision eps, processor).
        llm_model_type: ``config.model_type`` of the LLM (informational).
        vict_version: version of ``vict`` that wrote the config.
    """

    vpg_source: str
    llm_source: str
    vpg_format: str = "hf"
    num_extra_queries: int = 0
    peft: PeftSettings = field(default_factory=PeftSettings)
    projection_shape: list[int] = field(default_factory=list)
    num_visual_tokens: int = 0
    frozen_dtype: str = "float32"
    logits_on_labelled_only: bool = True
    seed: int = 0
    vpg_options: dict[str, Any] = field(default_factory=dict)
    llm_model_type: str = ""
    vict_version: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.peft, dict):
            self.peft = PeftSettings.from_dict(self.peft)
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionLLMConfig:
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
        return cls.from_dict(data)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with the global torch RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class VisionLLM(nn.Module):
    """Frozen VPG + trainable projection + frozen causal LM with a trainable PEFT delta.

    Attributes:
        vpg: the ``VisualPromptGenerator`` (frozen, except its extra queries).
        projection: ``Linear(d_qformer, d_llm)`` (trainable, float32).
        llm: the causal LM, PEFT-wrapped (``peft.PeftModelForCausalLM``) unless ``peft.type == "none"``.
        tokenizer: the LLM's tokenizer (``None`` only for meta-device footprint models).
        config: the ``VisionLLMConfig`` (saved as ``config.json``).
    """

    def __init__(
        self,
        vpg: VisualPromptGenerator,
        llm: nn.Module,
        tokenizer: Any,
        config: VisionLLMConfig,
        peft_applied: bool = False,
    ) -> None:
        """Compose the parts. ``llm`` is the bare causal LM (``peft_applied=False``: the PEFT delta described
        by ``config.peft`` is added here, seeded by ``config.seed``) or an already PEFT-wrapped one."""
        super().__init__()
        if vpg.num_extra_queries != config.num_extra_queries:
            raise ValueError(
                f"VPG has {vpg.num_extra_queries} extra queries but config.num_extra_queries="
                f"{config.num_extra_queries}"
            )
        self.vpg = vpg
        self.tokenizer = tokenizer
        self.config = config
        spec = vpg.spec
        if spec.format in ("hf", "lavis"):
            # The VPG knows where its frozen weights came from; the config (and so every checkpoint) records it.
            config.vpg_source, config.vpg_format = spec.source, spec.format
            config.vpg_options = {} if spec.format == "hf" else _lavis_options(spec)
        d_llm = llm.get_input_embeddings().embedding_dim
        device = llm.get_input_embeddings().weight.device
        with _seeded(config.seed + 1):  # + 1: independent of the extra queries' stream (seeded by config.seed)
            self.projection = nn.Linear(vpg.hidden_size, d_llm, device=device, dtype=torch.float32)
            self.llm = llm if peft_applied else apply_peft(llm, config.peft)
        config.projection_shape = [vpg.hidden_size, d_llm]
        config.num_visual_tokens = vpg.num_queries
        config.llm_model_type = str(getattr(self._base_llm().config, "model_type", ""))
        if not config.vict_version:
            from vict import __version__

            config.vict_version = __version__
        if tokenizer is not None and tokenizer.pad_token_id is None:
            # Padding needs an id; LLaMA-style tokenizers have none, so pad with eos (masked out anyway).
            tokenizer.pad_token = tokenizer.eos_token
            logger.info("tokenizer had no pad token; using eos %r for padding", tokenizer.eos_token)
        mark_trainable(self)
        self._cast_trainable_fp32()
        self.train(False)
        logger.info("%s", parameter_table(self.trainable_parameters_by_part(), title="VisionLLM parameters by part"))

    # ------------------------------------------------------------------------------------------ structure
    def _base_llm(self) -> nn.Module:
        """The underlying ``*ForCausalLM`` (PEFT layers injected in place, if any)."""
        get = getattr(self.llm, "get_base_model", None)
        return get() if callable(get) else self.llm

    def _cast_trainable_fp32(self) -> None:
        for name, param in self.named_parameters():
            if is_trainable(name) and param.dtype != torch.float32:
                param.data = param.data.float()

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens per image (``n_orig + n_extra``): how many ``IMAGE_SLOT_ID`` each row must hold."""
        return self.vpg.num_queries

    @property
    def image_processor(self) -> Any:
        """The VPG's image processor (the right size, mean and std for its checkpoint)."""
        return self.vpg.image_processor

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        if tok is not None and tok.pad_token_id is not None:
            return int(tok.pad_token_id)
        return int(getattr(self._base_llm().config, "pad_token_id", None) or 0)

    def train(self, mode: bool = True) -> VisionLLM:
        """Train mode reaches only modules that own trainable parameters (and LoRA dropout); the frozen
        vision tower, Q-Former and LLM base always stay in eval mode, so their dropout never fires."""
        if not hasattr(self, "llm"):
            return super().train(mode)
        set_frozen_eval(self, mode)
        self.training = mode
        return self

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the LLM's activations in the backward pass (non-reentrant, so gradients still reach the
        visual tokens through the frozen layers): less memory for a 7B LLM, same gradients."""
        self._base_llm().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def trainable_parameters_by_part(self) -> dict[str, int]:
        """Parameter counts: ``extra_queries``, ``projection``, ``peft``, ``trainable``, ``frozen_vision``,
        ``frozen_qformer`` (incl. original queries), ``frozen_llm``, ``frozen``, ``total``."""
        return count_by_part(self)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached copies of every trainable parameter (the single predicate), keyed by full name."""
        return trainable_state_dict(self)

    # --------------------------------------------------------------------------------------------- inputs
    def encode_images(
        self, pixel_values: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Visual tokens ``(b, n_visual, d_llm)`` in the LLM's dtype, from ``pixel_values (b, 3, S, S)`` or
        from cached vision-tower outputs ``image_embeds (b, n_patches + 1, d_vision)``."""
        if image_embeds is None:
            if pixel_values is None:
                raise ValueError("VisionLLM needs pixel_values (b, 3, S, S) or cached image_embeds")
            image_embeds = self.vpg.encode_vision(pixel_values)
        queries = self.vpg.query(image_embeds)
        visual = self.projection(queries.to(self.projection.weight.dtype))
        return visual.to(self._base_llm().get_input_embeddings().weight.dtype)

    def embed_inputs(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``(b, L, d_llm)`` with the slot rows replaced by ``visual_tokens (b, n_visual, d_llm)``.

        Every row of ``input_ids (b, L)`` must hold exactly ``num_visual_tokens`` ``IMAGE_SLOT_ID`` entries.
        """
        slots = input_ids == IMAGE_SLOT_ID
        counts = slots.sum(dim=1)
        n = visual_tokens.shape[1]
        bad = (counts != n).nonzero().flatten().tolist()
        if bad:
            got = ", ".join(f"row {i}: {int(counts[i])}" for i in bad[:8])
            raise ValueError(
                f"each row of input_ids must contain exactly {n} image slots (IMAGE_SLOT_ID={IMAGE_SLOT_ID}, the "
                f"model's num_visual_tokens), got {got}. Build batches with "
                f"VictCollator(num_visual_tokens=model.num_visual_tokens), one '<image>' per prompt."
            )
        first = slots.int().argmax(dim=1)
        span = slots.shape[1] - slots.int().flip(1).argmax(dim=1) - first
        split = (span != n).nonzero().flatten().tolist()
        if split:
            raise ValueError(
                f"the {n} image slots must be consecutive (one '<image>' per prompt); rows {split[:8]} have them "
                "spread out. Build batches with VictCollator."
            )
        if visual_tokens.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"{visual_tokens.shape[0]} images for {input_ids.shape[0]} sequences: give one image per row"
            )
        embedding = self._base_llm().get_input_embeddings()
        ids = input_ids.masked_fill(slots, self.pad_token_id)
        vocab = embedding.num_embeddings
        if ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
            raise ValueError(
                f"input_ids hold ids outside the LLM vocabulary [0, {vocab}) (min {int(ids.min())}, max "
                f"{int(ids.max())}); tokenize with this model's tokenizer (model.tokenizer)"
            )
        embeds = embedding(ids)
        return embeds.masked_scatter(slots.unsqueeze(-1), visual_tokens.to(embeds.dtype))

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the LLM when its frozen base is bf16/fp16: the fp32 trainable deltas (LoRA,
        adaption prompts) are cast per op, their master weights and gradients stay fp32."""
        dtype = DTYPES[self.config.frozen_dtype]
        if dtype == torch.float32:
            return contextlib.nullcontext()
        device = self.projection.weight.device.type
        return torch.autocast(device_type=device, dtype=dtype)

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
        image_embeds: torch.Tensor | None = None,
        logits_on_labelled_only: bool | None = None,
    ) -> CausalLMOutputWithPast:
        """Loss and logits of a batch.

        Args:
            pixel_values: ``(b, 3, S, S)`` images (or pass cached ``image_embeds`` from ``vpg.encode_vision``).
            input_ids: ``(b, L)`` token ids with ``num_visual_tokens`` ``IMAGE_SLOT_ID`` slots per row.
            attention_mask: ``(b, L)``, 1 for real tokens (slots included), 0 for padding.
            labels: ``(b, L)`` target ids, ``IGNORE_INDEX`` (-100) everywhere except target tokens. The loss is
                the mean cross entropy of predicting ``labels[:, t + 1]`` from position ``t``.
            logits_on_labelled_only: overrides ``config.logits_on_labelled_only``. When true and ``labels`` are
                given, the LM head runs only at the ``n_tgt`` positions whose shifted label is not -100 and
                ``logits`` has shape ``(n_tgt, vocab)`` (rows in batch-major order of
                ``labels[:, 1:] != -100``); this saves the ``(b, L, vocab)`` logits tensor and gives the same loss.
                Otherwise ``logits`` is ``(b, L, vocab)``.

        Returns:
            ``CausalLMOutputWithPast(loss, logits)`` (``loss`` is ``None`` without labels).
        """
        if input_ids is None:
            raise ValueError("VisionLLM.forward needs input_ids (b, L) with image slots")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.embed_inputs(input_ids, self.encode_images(pixel_values, image_embeds))
        position_ids = self.position_ids(attention_mask)
        base = self._base_llm()
        only_labelled = (
            self.config.logits_on_labelled_only if logits_on_labelled_only is None else bool(logits_on_labelled_only)
        )
        if labels is not None and only_labelled and _plain_lm_head(base):
            body = getattr(base, base.base_model_prefix)
            targets = labels[:, 1:]
            keep = targets != IGNORE_INDEX
            with self._autocast():
                hidden = body(
                    inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
                )[0]
                logits = base.get_output_embeddings()(hidden[:, :-1][keep])
            return CausalLMOutputWithPast(loss=_mean_ce(logits, targets[keep]), logits=logits)
        with self._autocast():
            out = self.llm(
                inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            )
        logits = out.logits
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
        image_embeds: torch.Tensor | None = None,
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
        was_training = self.training
        self.train(False)
        try:
            embeds = self.embed_inputs(input_ids, self.encode_images(pixel_values, image_embeds))
            tok = self.tokenizer
            kwargs.setdefault("do_sample", False)
            kwargs.setdefault("eos_token_id", None if tok is None else tok.eos_token_id)
            kwargs.setdefault("pad_token_id", self.pad_token_id)
            with self._autocast():
                out = self.llm.generate(
                    inputs_embeds=embeds,
                    attention_mask=attention_mask,
                    max_new_tokens=max_new_tokens,
                    num_beams=num_beams,
                    **kwargs,
                )
        finally:
            self.train(was_training)
        # With only inputs_embeds, decoder-only generate returns just the new tokens.
        return out

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
    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``config.json``, ``vict_trainable.safetensors`` (extra queries + projection), the PEFT adapter
        in peft's format under ``adapter/`` (loadable by ``peft.PeftModel.from_pretrained(bare_llm, dir/"adapter")``)
        and the tokenizer files, atomically (temporary sibling folder, then rename)."""
        save_directory = Path(save_directory)
        with atomic_directory(save_directory) as tmp:
            self.config.save(tmp / CONFIG_FILE)
            own = {n: p for n, p in self.trainable_state_dict().items() if not n.startswith("llm.")}
            save_tensors(own, tmp / TRAINABLE_FILE, metadata={"format": "pt", "vict": self.config.vict_version})
            if self.config.peft.type != "none":
                # save_embedding_layers=False: with LoRA on lm_head/embed_tokens, peft would otherwise also save the
                # frozen base matrices (vocab x d: 500 MB for LLaMA-7B), which the LLM source already holds.
                self.llm.save_pretrained(str(tmp / ADAPTER_DIR), save_embedding_layers=False)
                # peft writes a boilerplate model card; the checkpoint's config.json is the description.
                (tmp / ADAPTER_DIR / "README.md").unlink(missing_ok=True)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
        return save_directory

    @classmethod
    def from_config(cls, config: VisionLLMConfig, tokenizer: Any = None) -> VisionLLM:
        """Build a fresh model from its sources: the VPG from ``config.vpg_source``, the LLM (and, unless
        given, its tokenizer) from ``config.llm_source``; trainable parts initialised from ``config.seed``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = DTYPES[config.frozen_dtype]
        vpg = VisualPromptGenerator.from_spec(config.vpg_spec(), dtype=dtype, seed=config.seed)
        llm = AutoModelForCausalLM.from_pretrained(config.llm_source, dtype=dtype)
        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(config.llm_source)
        return cls(vpg, llm, tokenizer, config)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path,
        frozen_dtype: str | None = None,
        vpg_source: str | Path | None = None,
        llm_source: str | Path | None = None,
    ) -> VisionLLM:
        """Rebuild a saved model: frozen parts from the sources named in ``config.json``, trainable parts
        from ``vict_trainable.safetensors`` and ``adapter/``, tokenizer from the checkpoint.

        ``frozen_dtype`` overrides the saved one (e.g. ``"bfloat16"`` on a GPU); ``vpg_source``/``llm_source``
        point at the frozen checkpoints when they have moved (another machine, another cache directory).
        """
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        checkpoint_dir = Path(checkpoint_dir)
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
        dtype = DTYPES[config.frozen_dtype]
        vpg = VisualPromptGenerator.from_spec(config.vpg_spec(), dtype=dtype, seed=config.seed)
        llm = AutoModelForCausalLM.from_pretrained(config.llm_source, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
        if config.peft.type != "none":
            adapter = checkpoint_dir / ADAPTER_DIR
            if not (adapter / "adapter_config.json").is_file():
                raise FileNotFoundError(
                    f"{adapter}: missing adapter_config.json (config.peft.type={config.peft.type!r})"
                )
            llm = PeftModel.from_pretrained(llm, str(adapter), is_trainable=True)
        model = cls(vpg, llm, tokenizer, config, peft_applied=True)
        state = load_tensors(checkpoint_dir / TRAINABLE_FILE)
        expected = {n for n, _ in model.named_parameters() if is_trainable(n) and not n.startswith("llm.")}
        if set(state) != expected:
            raise ValueError(
                f"{checkpoint_dir / TRAINABLE_FILE}: holds {sorted(state)}, expected {sorted(expected)} "
                "(was it written by a model with a different config?)"
            )
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                if tuple(value.shape) != tuple(params[name].shape):
                    raise ValueError(
                        f"{checkpoint_dir / TRAINABLE_FILE}: {name} has shape {tuple(value.shape)}, the model "
                        f"expects {tuple(params[name].shape)}"
                    )
                params[name].copy_(value)
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
