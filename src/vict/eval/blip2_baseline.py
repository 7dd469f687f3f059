"""A plain BLIP-2 checkpoint as a baseline, through transformers' own ``Blip2ForConditionalGeneration`` and
``Blip2Processor``, so that baseline rows come from the same harness as the VICT rows.

Prompts follow LAVIS's BLIP-2 evaluation: captions with an empty prompt (configurable, e.g. ``"a photo of"``),
GQA with ``"Question: {} Short answer:"``; with a context caption, the caption goes first in the same prompt style:
``"{caption} Question: {} Short answer:"``. Decoding is greedy.

In transformers 5.x the text must carry ``num_query_tokens`` ``<image>`` tokens (``config.image_token_index``); the
processor prepends them when it knows ``num_query_tokens``. Older hub snapshots lack both: we set them from the
model config and add ``<image>`` to the tokenizer if needed, and refuse a config without ``image_token_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

BLIP2_QA_PROMPT = "Question: {} Short answer:"
BLIP2_CONTEXT_QA_PROMPT = "{} Question: {} Short answer:"
BLIP2_CAPTION_PROMPT = ""


class Blip2Baseline:
    """Generation with a BLIP-2 checkpoint (any ``Blip2ForConditionalGeneration`` with a causal LM or T5).

    Attributes: ``model``, ``processor``, ``name`` (the source path or hub id), ``num_query_tokens``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any = None,
        name: str = "blip2",
        image_processor: Any = None,
        tokenizer: Any = None,
    ) -> None:
        """``processor`` (a ``Blip2Processor``) is needed to generate; the similarity analysis only needs an
        ``image_processor`` (and a ``tokenizer`` to name the nearest words), taken from ``processor`` if given."""
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.num_query_tokens = int(model.config.num_query_tokens)
        self.image_processor = image_processor or getattr(processor, "image_processor", None)
        self.tokenizer = tokenizer or getattr(processor, "tokenizer", None)
        if self.image_processor is None:
            raise ValueError(f"{name}: no image processor (pass processor= or image_processor=)")
        if processor is not None:
            if getattr(processor, "num_query_tokens", None) is None:
                processor.num_query_tokens = self.num_query_tokens
            # Generation batches are left padded so every row's last prompt token is at the end.
            processor.tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        require_processor: bool = True,
    ) -> Blip2Baseline:
        """Load model + processor from a BLIP-2 directory or hub id (``Salesforce/blip2-opt-2.7b``).

        With ``require_processor=False`` a directory without tokenizer/processor files (e.g. a VPG source that
        only kept ``preprocessor_config.json``) still loads, for the similarity analysis.
        """
        from transformers import AutoTokenizer, Blip2ForConditionalGeneration, Blip2Processor

        source = str(source)
        if Path(source).exists() and not (Path(source) / "config.json").is_file():
            raise FileNotFoundError(f"{source}: not a BLIP-2 directory (no config.json); pass --blip2 DIR_OR_HUB_ID")
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = Blip2ForConditionalGeneration.from_pretrained(source, **kwargs).to(device)
        try:
            processor = Blip2Processor.from_pretrained(source)
        except (OSError, ValueError, TypeError) as e:
            if require_processor:
                raise FileNotFoundError(
                    f"{source}: cannot load its Blip2Processor ({e}); generation needs the tokenizer and processor "
                    "files saved beside the weights (Blip2Processor.save_pretrained)"
                ) from e
            image_processor = _image_processor_class().from_pretrained(source)
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
            except (OSError, ValueError, TypeError):
                tokenizer = None  # nearest words are then reported as ids
            return cls(model, None, name=source, image_processor=image_processor, tokenizer=tokenizer)
        return cls(model, processor, name=source)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode_text(self, prompts: Sequence[str], images: Sequence[Image.Image] | None) -> dict[str, torch.Tensor]:
        """``input_ids``/``attention_mask`` (b, L) with the ``<image>`` run first, right-aligned; ``pixel_values``
        too when ``images`` are given."""
        if images is not None:
            enc = self.processor(images=list(images), text=list(prompts), return_tensors="pt", padding=True)
            image_ids: list[int] = []
        else:
            # Text only: the processor then adds no <image> run; prepend the same ids it would have added.
            enc = self.processor(text=list(prompts), return_tensors="pt", padding=True)
            run = self.processor.image_token.content * self.num_query_tokens
            image_ids = self.tokenizer(run, add_special_tokens=False)["input_ids"]
        # The processor left-pads the text and then prepends the <image> run, leaving pads in the middle; move
        # every row's real tokens to the right end so that rows align at the generation position.
        ids, mask = enc["input_ids"], enc["attention_mask"]
        rows = [torch.cat([torch.tensor(image_ids, dtype=ids.dtype), ids[i][mask[i].bool()]]) for i in range(len(ids))]
        width = max(r.numel() for r in rows)
        packed_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=ids.dtype)
        packed_mask = torch.zeros((len(rows), width), dtype=mask.dtype)
        for i, real in enumerate(rows):
            packed_ids[i, width - real.numel() :] = real
            packed_mask[i, width - real.numel() :] = 1
        out = {"input_ids": packed_ids.to(self.device), "attention_mask": packed_mask.to(self.device)}
        if images is not None:
            out["pixel_values"] = enc["pixel_values"].to(self.device, next(self.model.parameters()).dtype)
        return out

    @torch.no_grad()
    def generate(
        self,
        images: Sequence[Image.Image] | None,
        prompts: Sequence[str],
        max_new_tokens: int,
        image_features: torch.Tensor | None = None,
    ) -> list[str]:
        """Greedy generation for ``len(prompts)`` (image, prompt) pairs; returns the new text of each, stripped.

        ``image_features (b, num_query_tokens, d_lm)`` from ``image_features(...)`` replaces ``images``: the vision
        tower and Q-Former are then skipped and the rest is exactly ``Blip2ForConditionalGeneration.generate``
        (text embeddings, projected queries scattered into the ``<image>`` slots, the LM's ``generate``).
        """
        if self.processor is None:
            raise ValueError(f"{self.name}: no Blip2Processor (tokenizer + processor files); cannot generate")
        if getattr(self.model.config, "image_token_index", None) is None:
            raise ValueError(
                f"{self.name}: config.json has no image_token_index. transformers 5.x fills <image> placeholders "
                "in the text; use a BLIP-2 snapshot saved with transformers >= 4.46 (the hub checkpoints were updated)"
            )
        n = len(image_features) if image_features is not None else len(images or [])
        if n != len(prompts):
            raise ValueError(f"{n} images but {len(prompts)} prompts")
        if not prompts:
            return []
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
        if image_features is None:
            enc = self._encode_text(prompts, images)
            out = self.model.generate(**enc, **kwargs)
        else:
            enc = self._encode_text(prompts, None)
            out = self._generate_from_features(enc, image_features, kwargs)
        if not self.model.config.use_decoder_only_language_model:
            new = out
        else:
            new = out[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _generate_from_features(
        self, enc: dict[str, torch.Tensor], features: torch.Tensor, kwargs: dict[str, Any]
    ) -> torch.Tensor:
        # The tail of Blip2ForConditionalGeneration.generate (transformers 5.x), after its language_projection.
        model = self.model
        input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
        inputs_embeds = model.get_input_embeddings()(input_ids)
        slots = (input_ids == model.config.image_token_id).unsqueeze(-1)
        inputs_embeds = inputs_embeds.masked_scatter(slots, features.to(inputs_embeds.device, inputs_embeds.dtype))
        inputs: dict[str, torch.Tensor] = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        if not model.language_model.config.is_encoder_decoder:
            inputs["input_ids"] = input_ids
        return model.language_model.generate(**inputs, **kwargs)

    def caption(
        self,
        images: Sequence[Image.Image] | None,
        prompt: str = BLIP2_CAPTION_PROMPT,
        max_new_tokens: int = 30,
        image_features: torch.Tensor | None = None,
    ) -> list[str]:
        """One caption per image ``(prompt + generated text, as LAVIS returns it when prompt is non-empty)``;
        ``image_features`` (from ``image_features``) may replace ``images``."""
        n = len(image_features) if image_features is not None else len(images or [])
        texts = self.generate(images, [prompt] * n, max_new_tokens, image_features=image_features)
        return [f"{prompt} {t}".strip() if prompt else t for t in texts]

    def answer(
        self,
        images: Sequence[Image.Image] | None,
        questions: Sequence[str],
        contexts: Sequence[str | None] | None = None,
        max_new_tokens: int = 10,
        image_features: torch.Tensor | None = None,
    ) -> list[str]:
        """Short answers with ``Question: {} Short answer:``; a context caption, when given, goes first.
        ``image_features (len(questions), num_query_tokens, d_lm)`` may replace ``images``."""
        contexts = list(contexts) if contexts is not None else [None] * len(questions)
        prompts = [self.prompt(q, c) for q, c in zip(questions, contexts)]
        return self.generate(images, prompts, max_new_tokens, image_features=image_features)

    @staticmethod
    def prompt(question: str, context: str | None = None) -> str:
        """The short-answer prompt of ``question``, with ``context`` text first when it is not empty."""
        return BLIP2_CONTEXT_QA_PROMPT.format(context, question) if context else BLIP2_QA_PROMPT.format(question)

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Q-Former outputs projected by ``language_projection`` into the LM's embedding space, in the model's
        dtype: ``(b, num_query_tokens, d_lm)``. They depend only on the image: compute once, pass to ``generate``."""
        pixel_values = self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(self.device, next(self.model.parameters()).dtype)
        # get_image_features runs vision -> Q-Former -> language_projection exactly as forward/generate do.
        return self.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output

    def visual_tokens(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``image_features`` as float32: ``(b, num_query_tokens, d_lm)``."""
        return self.image_features(images).float()

    def input_embeddings(self) -> torch.Tensor:
        """The LM's input embedding matrix ``(V, d_lm)``."""
        return self.model.get_input_embeddings().weight.detach()


def _image_processor_class() -> type:
    # transformers 5 ships a torchvision-backed BlipImageProcessor and a PIL one; without torchvision use the PIL
    # one (same resize/rescale/normalise), as vict.models.vpg does.
    import importlib.util

    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "BlipImageProcessorPil"):
        return transformers.BlipImageProcessorPil
    return transformers.BlipImageProcessor
