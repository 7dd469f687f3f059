"""The visual prompt generator (VPG): a frozen BLIP-2 vision tower and Q-Former, plus trainable extra queries.

``pixel_values (b, 3, H, W) -> vision tower -> image embeds (b, n_patches + 1, d_vision)``
``[original queries (frozen) ; extra queries (trainable)] -> Q-Former(cross-attends to image embeds)
-> (b, n_orig + n_extra, d_qformer)``

The modules are transformers' own ``Blip2VisionModel`` and ``Blip2QFormerModel`` (whose ``layernorm`` is the
layer norm on the query embeddings, LAVIS's ``Qformer.bert.embeddings.LayerNorm``), so a VPG computes exactly
what ``Blip2ForConditionalGeneration`` computes before its language projection.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import Blip2Config, Blip2QFormerConfig, Blip2QFormerModel, Blip2VisionConfig, Blip2VisionModel

from vict.models import hf_checkpoint, lavis

logger = logging.getLogger(__name__)

VPG_FORMATS = ("hf", "lavis", "config")
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VPGSpec:
    """Everything needed to rebuild a VPG: where its frozen weights come from and how many extra queries.

    Attributes:
        source: a HF BLIP-2 directory or hub id (``format="hf"``), a LAVIS ``.pth`` path (``"lavis"``), or a
            free label (``"config"``: random weights from ``blip2_config``, used for footprint estimates).
        format: ``"hf"``, ``"lavis"`` or ``"config"``.
        num_extra_queries: trainable queries appended to the checkpoint's original ones.
        blip2_config: the ``Blip2Config`` dict (LAVIS and config formats; HF reads it from ``source``).
        lavis_vision_path: LAVIS only: an ``eva_vit_g.pth`` merged in when the checkpoint omits the ViT.
        ln_vision_eps: LAVIS only: eps of ``ln_vision`` (LAVIS uses 1e-5; HF's conversion keeps 1e-6).
        image_processor: LAVIS/config only: ``{"size", "image_mean", "image_std"}`` of the preprocessing.
    """

    source: str
    format: str = "hf"
    num_extra_queries: int = 0
    blip2_config: dict[str, Any] | None = None
    lavis_vision_path: str | None = None
    ln_vision_eps: float = 1e-5
    image_processor: dict[str, Any] | None = field(default=None)


def make_image_processor(size: int, mean: tuple | list = OPENAI_CLIP_MEAN, std: tuple | list = OPENAI_CLIP_STD):
    """A BLIP image processor (resize to ``size``x``size`` bicubic, rescale, normalise) without torchvision."""
    cls = _image_processor_class()
    return cls(size={"height": size, "width": size}, image_mean=list(mean), image_std=list(std))


def _image_processor_class() -> type:
    # transformers 5 has a torchvision backend (BlipImageProcessor) and a PIL one; use the PIL one when
    # torchvision is absent to avoid a fallback warning on every load.
    import importlib.util

    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "BlipImageProcessorPil"):
        return transformers.BlipImageProcessorPil
    return transformers.BlipImageProcessor


class VisualPromptGenerator(nn.Module):
    """Frozen BLIP-2 vision tower + Q-Former with frozen original queries and trainable extra queries.

    Attributes:
        vision_model: ``Blip2VisionModel`` (frozen).
        qformer: ``Blip2QFormerModel`` (frozen; its ``layernorm`` normalises the query embeddings).
        query_tokens: ``(1, n_orig, d_qformer)`` frozen parameter.
        extra_queries: ``(1, n_extra, d_qformer)`` trainable parameter (``n_extra`` may be 0).
        image_processor: the checkpoint's BLIP image processor (size, mean, std).
        spec: a ``VPGSpec`` recording the source, so a checkpoint can point back to it.
    """

    def __init__(
        self,
        vision_config: Blip2VisionConfig,
        qformer_config: Blip2QFormerConfig,
        num_query_tokens: int,
        num_extra_queries: int = 0,
        image_processor: Any = None,
        spec: VPGSpec | None = None,
    ) -> None:
        super().__init__()
        if num_extra_queries < 0:
            raise ValueError(f"num_extra_queries={num_extra_queries}: must be >= 0")
        qformer_config = Blip2QFormerConfig(**{**qformer_config.to_dict(), "use_qformer_text_input": False})
        qformer_config.encoder_hidden_size = vision_config.hidden_size
        self.vision_model = Blip2VisionModel(vision_config)
        self.qformer = Blip2QFormerModel(qformer_config)
        d_q = qformer_config.hidden_size
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_tokens, d_q), requires_grad=False)
        self.extra_queries = nn.Parameter(torch.zeros(1, num_extra_queries, d_q))
        self.image_processor = image_processor or make_image_processor(vision_config.image_size)
        self.spec = spec or VPGSpec(source="<unspecified>", format="config", num_extra_queries=num_extra_queries)
        self.vision_model.requires_grad_(False)
        self.qformer.requires_grad_(False)
        self.train(False)

    # ----------------------------------------------------------------------------------------------- sizes
    @property
    def num_original_queries(self) -> int:
        return self.query_tokens.shape[1]

    @property
    def num_extra_queries(self) -> int:
        return self.extra_queries.shape[1]

    @property
    def num_queries(self) -> int:
        """``n_orig + n_extra``: the number of output tokens per image."""
        return self.num_original_queries + self.num_extra_queries

    @property
    def hidden_size(self) -> int:
        """``d_qformer``, the width of each output token."""
        return self.query_tokens.shape[-1]

    @property
    def vision_hidden_size(self) -> int:
        return self.vision_model.config.hidden_size

    @property
    def image_size(self) -> int:
        """Expected input height and width in pixels."""
        return self.vision_model.config.image_size

    # ---------------------------------------------------------------------------------------------- forward
    def train(self, mode: bool = True) -> VisualPromptGenerator:
        """Only the extra queries train; the vision tower and Q-Former always stay in eval mode (no dropout)."""
        super().train(mode)
        self.vision_model.train(False)
        self.qformer.train(False)
        return self

    def check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming expected vs received shape when ``pixel_values`` is not ``(b,3,S,S)``."""
        size = self.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(
                f"VisualPromptGenerator expects pixel_values of shape (batch, 3, {size}, {size}), got "
                f"{tuple(pixel_values.shape)}. Preprocess images with the VPG's own image processor "
                f"(vpg.preprocess(images) or model.image_processor(images, return_tensors='pt')), which resizes "
                f"to {size}x{size} with this checkpoint's mean and std."
            )

    def encode_vision(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Vision tower: ``(b, 3, S, S) -> image embeds (b, n_patches + 1, d_vision)`` (post-layernormed).

        Depends only on the image, so the result can be cached and fed to ``query`` later.
        """
        self.check_pixel_values(pixel_values)
        dtype = self.vision_model.embeddings.patch_embedding.weight.dtype
        return self.vision_model(pixel_values=pixel_values.to(dtype)).last_hidden_state

    def queries(self, batch_size: int) -> torch.Tensor:
        """``[original ; extra]`` query embeddings expanded to ``(batch_size, n_orig + n_extra, d_qformer)``."""
        q = torch.cat([self.query_tokens, self.extra_queries.to(self.query_tokens.dtype)], dim=1)
        return q.expand(batch_size, -1, -1)

    def query(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Q-Former: ``image embeds (b, n_patches + 1, d_vision) -> (b, n_orig + n_extra, d_qformer)``.

        The output is in the Q-Former's dtype (float32 unless the whole VPG was cast).
        """
        if image_embeds.ndim != 3 or image_embeds.shape[-1] != self.vision_hidden_size:
            raise ValueError(
                f"VisualPromptGenerator.query expects image embeds (batch, tokens, {self.vision_hidden_size}) "
                f"from encode_vision, got {tuple(image_embeds.shape)}"
            )
        # Every image token is valid: no cross-attention mask (BLIP-2's all-ones mask masks nothing, and without one
        # the Q-Former also runs on the meta device, where vict.models.flops counts it)
        out = self.qformer(
            query_embeds=self.queries(image_embeds.shape[0]),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=None,
            return_dict=True,
        )
        return out.last_hidden_state

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values (b, 3, S, S) -> (b, n_orig + n_extra, d_qformer)``: ``query(encode_vision(x))``."""
        return self.query(self.encode_vision(pixel_values))

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> ``pixel_values (b, 3, S, S)`` with this checkpoint's size, mean and std."""
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    # ----------------------------------------------------------------------------------------- extra queries
    @torch.no_grad()
    def init_extra_queries(self, seed: int = 0) -> None:
        """Initialise the extra queries like the originals: i.i.d. normal with the originals' mean and std.

        Random rather than copies, so the extra queries start distinct from the originals and from each other
        (copies would produce duplicate Q-Former outputs at step 0). Deterministic for a given ``seed``.
        """
        if self.num_extra_queries == 0:
            return
        orig = self.query_tokens.float()
        std = orig.std().item() if orig.numel() > 1 else 0.0
        mean = orig.mean().item()
        if not math.isfinite(std) or std == 0.0:
            std = 0.02  # BLIP-2's initializer_range, for all-zero (untrained) originals
        gen = torch.Generator().manual_seed(seed)
        values = torch.randn(self.extra_queries.shape, generator=gen) * std + mean
        self.extra_queries.copy_(values.to(self.extra_queries.device, self.extra_queries.dtype))

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_config(
        cls,
        config: Blip2Config,
        num_extra_queries: int = 0,
        image_processor: Any = None,
        spec: VPGSpec | None = None,
        seed: int = 0,
    ) -> VisualPromptGenerator:
        """A VPG with random weights shaped by ``config`` (use under ``torch.device('meta')`` to count only)."""
        vpg = cls(
            config.vision_config,
            config.qformer_config,
            config.num_query_tokens,
            num_extra_queries,
            image_processor=image_processor,
            spec=spec or VPGSpec("<config>", "config", num_extra_queries, blip2_config=config.to_dict()),
        )
        if vpg.query_tokens.device.type != "meta":
            vpg.init_extra_queries(seed)
        return vpg

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        num_extra_queries: int = 0,
        dtype: torch.dtype | None = None,
        seed: int = 0,
    ) -> VisualPromptGenerator:
        """Load the vision tower, Q-Former and query tokens of a Hugging Face BLIP-2 checkpoint.

        Args:
            source: a local directory written by ``Blip2ForConditionalGeneration.save_pretrained`` (or
                ``Blip2Model``), or a hub id such as ``"Salesforce/blip2-opt-2.7b"``. Only the config, the
                processor config and the tensors under ``vision_model.``/``qformer.``/``query_tokens`` are read
                (for a hub id, only the shards holding them are downloaded).
            num_extra_queries: trainable queries to append (initialised by ``init_extra_queries(seed)``).
            dtype: dtype of the frozen vision tower (default float32; e.g. ``torch.bfloat16``); the Q-Former
                and queries stay float32, as in transformers (``_keep_in_fp32_modules``).
            seed: seed of the extra-query initialisation.
        """
        config_dict = hf_checkpoint.read_json(source, hf_checkpoint.CONFIG_NAME)
        hf_checkpoint.check_blip2_config(source, config_dict)
        config = Blip2Config.from_dict(config_dict)
        proc_dict = hf_checkpoint.read_json(source, hf_checkpoint.PROCESSOR_NAME, required=False)
        if proc_dict is None:
            logger.warning(
                "%s has no %s; using BLIP's defaults (size %d, OpenAI CLIP mean/std)",
                source,
                hf_checkpoint.PROCESSOR_NAME,
                config.vision_config.image_size,
            )
            processor = make_image_processor(config.vision_config.image_size)
        else:
            processor = _image_processor_class().from_dict(proc_dict)
        tensors = hf_checkpoint.load_vpg_tensors(source)
        tensors = _merge_split_qv_bias(tensors)
        spec = VPGSpec(source=str(source), format="hf", num_extra_queries=num_extra_queries)
        with torch.device("meta"):
            vpg = cls(
                config.vision_config,
                config.qformer_config,
                config.num_query_tokens,
                num_extra_queries,
                processor,
                spec,
            )
        vpg._assign_frozen(tensors, str(source))
        vpg.init_extra_queries(seed)
        vpg.vision_model.to(dtype or torch.float32)
        return vpg

    @classmethod
    def from_lavis(
        cls,
        path: str | Path,
        num_extra_queries: int = 0,
        config: Blip2Config | str | Path | None = None,
        vision_path: str | Path | None = None,
        ln_vision_eps: float = 1e-5,
        image_processor: Any = None,
        dtype: torch.dtype | None = None,
        seed: int = 0,
    ) -> VisualPromptGenerator:
        """Load a LAVIS BLIP-2 ``.pth`` state dict (``visual_encoder.*``, ``ln_vision.*``, ``Qformer.bert.*``,
        ``query_tokens``), loaded with ``torch.load(weights_only=True)``.

        Args:
            path: the LAVIS checkpoint (``{"model": state_dict}`` or the state dict itself).
            num_extra_queries: trainable queries to append.
            config: a ``Blip2Config`` or a HF BLIP-2 directory giving the sizes; ``None`` infers them from
                tensor shapes (works for the released ViT-g / ViT-L + BERT-base Q-Former models).
            vision_path: an EVA ViT state dict (``eva_vit_g.pth``) for checkpoints saved without their frozen
                ViT (LAVIS stage-2 checkpoints drop ``visual_encoder.*``).
            ln_vision_eps: eps of LAVIS's ``ln_vision`` (1e-5 in LAVIS).
            image_processor: defaults to BLIP's eval transform at the checkpoint's image size (bicubic resize,
                OpenAI CLIP mean/std), which is what LAVIS's ``blip_image_eval`` computes.
            dtype: dtype of the frozen vision tower (default float32).
            seed: seed of the extra-query initialisation.

        Raises:
            ValueError: keys missing (listed, with the likely fix) or unexpected (listed).
        """
        path = Path(path)
        state = lavis.unwrap_lavis(torch.load(path, map_location="cpu", weights_only=True), str(path))
        if vision_path is not None:
            eva = lavis.unwrap_lavis(torch.load(vision_path, map_location="cpu", weights_only=True), str(vision_path))
            state = {**lavis.add_eva_prefix(eva), **state}
        mapped, _, unknown = lavis.lavis_to_hf(state)
        if unknown:
            raise ValueError(
                f"{path}: unexpected keys for a LAVIS BLIP-2 state dict: {sorted(unknown)}. Expected only "
                "visual_encoder.*, ln_vision.*, Qformer.bert.*, query_tokens and the LLM/projection keys of "
                "LLM-coupled models (formats: LAVIS blip2_opt / blip2_t5 / blip2_qformer)."
            )
        if config is None:
            blip2_config = lavis.infer_blip2_config(mapped, str(path))
        elif isinstance(config, Blip2Config):
            blip2_config = config
        else:
            blip2_config = Blip2Config.from_pretrained(str(config))
        size = blip2_config.vision_config.image_size
        processor = image_processor or make_image_processor(size)
        spec = VPGSpec(
            source=str(path),
            format="lavis",
            num_extra_queries=num_extra_queries,
            blip2_config=blip2_config.to_dict(),
            lavis_vision_path=None if vision_path is None else str(vision_path),
            ln_vision_eps=ln_vision_eps,
            image_processor=_processor_summary(processor),
        )
        with torch.device("meta"):
            vpg = cls(
                blip2_config.vision_config,
                blip2_config.qformer_config,
                blip2_config.num_query_tokens,
                num_extra_queries,
                processor,
                spec,
            )
        vpg.vision_model.post_layernorm.eps = ln_vision_eps
        vpg._assign_frozen(mapped, str(path), lavis_names=True)
        vpg.init_extra_queries(seed)
        vpg.vision_model.to(dtype or torch.float32)
        return vpg

    @classmethod
    def from_spec(cls, spec: VPGSpec, dtype: torch.dtype | None = None, seed: int = 0) -> VisualPromptGenerator:
        """Rebuild a VPG from a ``VPGSpec`` (the frozen weights are re-read from ``spec.source``)."""
        if spec.format == "hf":
            return cls.from_pretrained(spec.source, spec.num_extra_queries, dtype=dtype, seed=seed)
        if spec.format == "lavis":
            proc = spec.image_processor or {}
            processor = make_image_processor(proc["size"], proc["image_mean"], proc["image_std"]) if proc else None
            config = Blip2Config.from_dict(spec.blip2_config) if spec.blip2_config else None
            return cls.from_lavis(
                spec.source,
                spec.num_extra_queries,
                config=config,
                vision_path=spec.lavis_vision_path,
                ln_vision_eps=spec.ln_vision_eps,
                image_processor=processor,
                dtype=dtype,
                seed=seed,
            )
        raise ValueError(
            f"VPG source {spec.source!r} has format {spec.format!r}, which records no weights to reload; "
            f"use one of 'hf', 'lavis'"
        )

    # -------------------------------------------------------------------------------------------- loading
    def _assign_frozen(self, tensors: dict[str, torch.Tensor], source: str, lavis_names: bool = False) -> None:
        """Assign checkpoint tensors (VPG-relative names) to the meta-initialised frozen modules."""
        expected = {k for k in self.state_dict() if k != "extra_queries"}
        missing = sorted(expected - set(tensors))
        unexpected = sorted(set(tensors) - expected)
        if missing:
            raise ValueError(_missing_message(source, missing, lavis_names))
        if unexpected:
            raise ValueError(
                f"{source}: unexpected VPG tensors {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}; "
                "the checkpoint's layout does not match its config (sizes, layer count, cross-attention frequency)"
            )
        shapes = self.state_dict()
        bad = [f"{k}: checkpoint {tuple(v.shape)} vs config {tuple(shapes[k].shape)}" for k, v in tensors.items()
               if tuple(v.shape) != tuple(shapes[k].shape)]  # fmt: skip
        if bad:
            raise ValueError(f"{source}: tensor shapes do not match the config:\n  " + "\n  ".join(bad[:20]))
        extra = self.extra_queries
        state = {k: v.float() if k.startswith(("qformer.", "query_tokens")) else v for k, v in tensors.items()}
        state["extra_queries"] = torch.zeros(extra.shape, dtype=torch.float32)
        self.load_state_dict(state, strict=True, assign=True)
        self.query_tokens.requires_grad_(False)
        self.extra_queries.requires_grad_(True)
        self.vision_model.requires_grad_(False)
        self.qformer.requires_grad_(False)
        leftover = [n for n, t in [*self.named_parameters(), *self.named_buffers()] if t.device.type == "meta"]
        if leftover:
            raise RuntimeError(f"{source}: tensors left uninitialised after loading: {leftover}")


def _merge_split_qv_bias(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The earliest HF conversion stored ``self_attn.q_bias`` / ``self_attn.v_bias``; today's modules hold one
    # ``self_attn.qkv.bias`` = cat(q, 0, v).
    out = dict(tensors)
    for key in [k for k in tensors if k.endswith(".self_attn.q_bias")]:
        prefix = key[: -len("q_bias")]
        v_key = prefix + "v_bias"
        if v_key in out:
            q, v = out.pop(key), out.pop(v_key)
            out[prefix + "qkv.bias"] = torch.cat([q, torch.zeros_like(v), v])
    return out


def _missing_message(source: str, missing: list[str], lavis_names: bool) -> str:
    if lavis_names:
        missing = [lavis.hf_to_lavis_name(k) for k in missing]
    shown = ", ".join(missing[:12]) + (f", ... ({len(missing)} in all)" if len(missing) > 12 else "")
    hint = "check that the checkpoint is a BLIP-2 model whose vision tower and Q-Former were saved"
    if lavis_names and any(k.startswith("visual_encoder.") for k in missing):
        hint = (
            "LAVIS stage-2 checkpoints (e.g. blip2_pretrained_opt2.7b.pth) are saved without their frozen ViT: "
            "pass vision_path=eva_vit_g.pth (LAVIS's EVA ViT-g weights)"
        )
    return f"{source}: missing VPG tensors: {shown}. {hint}."


def _processor_summary(processor: Any) -> dict[str, Any]:
    size = processor.size
    height = size["height"] if isinstance(size, dict) else size.height
    return {"size": int(height), "image_mean": list(processor.image_mean), "image_std": list(processor.image_std)}
