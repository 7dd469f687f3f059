"""The zoo's tiny BLIP-2: a tiny ViT + Q-Former trained to caption the world, around the source OPT.

The source OPT is tuned along with them by default (with replay of its text; see
``Blip2Spec.train_language_model`` for the measurement that made this the default) or kept frozen as in
BLIP-2's recipe.

The result is a plain Hugging Face BLIP-2 directory (``config.json`` + safetensors + ``Blip2Processor``), so
it loads exactly like ``Salesforce/blip2-opt-2.7b``: ``Blip2ForConditionalGeneration.from_pretrained(dir)``
and ``Blip2Processor.from_pretrained(dir)``. As in transformers 5.x, the text sequence carries
``num_query_tokens`` ``<image>`` tokens (``config.image_token_index``) before ``<s>``; the model writes the
projected Q-Former outputs at those positions.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from vict.constants import IGNORE_INDEX
from vict.zoo.corpus import reading_text
from vict.zoo.lm import encode_texts, pad_batch
from vict.zoo.presets import Blip2Spec
from vict.zoo.stream import SceneStream, StreamBatch
from vict.zoo.training import ProgressFn, TrainTrace, quiet, run_steps

IMAGE_TOKEN = "<image>"


def make_processor(tokenizer: PreTrainedTokenizerFast, spec: Blip2Spec) -> Blip2Processor:
    """A ``Blip2Processor`` over ``tokenizer`` (which gains the ``<image>`` special token, as the hub
    checkpoints' tokenizers did) and a PIL-backed ``BlipImageProcessor`` (size ``spec.image_size``, CLIP
    mean/std; the PIL backend needs no torchvision and saves as ``BlipImageProcessor``)."""
    image_processor = BlipImageProcessorPil(
        size={"height": spec.image_size, "width": spec.image_size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )
    return Blip2Processor(image_processor, tokenizer, num_query_tokens=spec.num_query_tokens)


def build_blip2(
    spec: Blip2Spec, source_lm: OPTForCausalLM, image_token_id: int, seed: int
) -> Blip2ForConditionalGeneration:
    """A BLIP-2 with a freshly initialised ViT and Q-Former (std ``spec.init_std`` for the vision weights and
    the query tokens) and a copy of ``source_lm`` as its language model (trainable iff
    ``spec.train_language_model``).

    ``image_token_id`` must be a row of ``source_lm``'s embedding table (the tokenizer's ``<image>``)."""
    if image_token_id >= source_lm.config.vocab_size:
        raise ValueError(
            f"<image> token id {image_token_id} is outside the source LM's vocabulary "
            f"({source_lm.config.vocab_size}); add the token to the tokenizer before building the source LM"
        )
    vision = Blip2VisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_ffn,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        initializer_range=spec.init_std,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=spec.qformer_hidden,
        num_hidden_layers=spec.qformer_layers,
        num_attention_heads=spec.qformer_heads,
        intermediate_size=spec.qformer_ffn,
        cross_attention_frequency=spec.cross_attention_frequency,
        encoder_hidden_size=spec.vision_hidden,
        # No dropout: the frozen VPG must give the same outputs in train and eval mode downstream.
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=spec.init_std,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=source_lm.config.to_dict(),
        num_query_tokens=spec.num_query_tokens,
        image_token_index=image_token_id,
        initializer_range=spec.init_std,
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        # transformers initialises the query tokens at zero (fine for loading weights, fatal from scratch:
        # identical queries get identical gradients), so draw them like the rest of the model.
        model.query_tokens.normal_(0.0, spec.init_std)
    missing, unexpected = model.language_model.load_state_dict(source_lm.state_dict(), strict=False)
    if unexpected or any("embed" not in k and "lm_head" not in k for k in missing):
        raise RuntimeError(f"source LM weights do not fit the BLIP-2 LM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.language_model.requires_grad_(spec.train_language_model)
    return model


def caption_batch(
    captions: list[list[int]], num_query_tokens: int, image_token_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[<image>]*q + caption`` right-padded: ``input_ids``, ``attention_mask``, ``labels``, each ``(b, q + L)``.

    ``captions`` hold ``<s> ... </s>`` ids; labels cover the caption after ``<s>`` (the image slots, ``<s>``
    and padding are ``IGNORE_INDEX``)."""
    length = num_query_tokens + max(len(c) for c in captions)
    input_ids = torch.full((len(captions), length), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    input_ids[:, :num_query_tokens] = image_token_id
    for i, cap in enumerate(captions):
        end = num_query_tokens + len(cap)
        input_ids[i, num_query_tokens:end] = torch.tensor(cap)
        mask[i, :end] = 1
        labels[i, num_query_tokens + 1 : end] = torch.tensor(cap[1:])
    return input_ids, mask, labels


def train_blip2(
    model: Blip2ForConditionalGeneration,
    stream: SceneStream,
    tokenizer: PreTrainedTokenizerFast,
    spec: Blip2Spec,
    seed: int,
    progress: ProgressFn = quiet,
    replay_texts: list[list[int]] | None = None,
    max_steps: int | None = None,
) -> TrainTrace:
    """BLIP-2's generative stage: the Q-Former, query tokens and projection (and the language model if
    ``spec.train_language_model``) learn to caption ``spec.steps`` batches of fresh ``stream`` images with their
    dense captions, through the frozen vision encoder.

    With a tuned language model and ``replay_texts`` (``<s> ... </s>`` ids of the LM's pretraining documents),
    each step adds the plain LM loss of ``batch_size`` replayed documents, so that captioning does not erase what
    the LM knew; the recorded loss is then the sum of both terms. ``max_steps`` stops early with the schedule of
    the full run (the build-prefix check)."""
    return _train_image_text(
        model, stream, tokenizer, spec, seed, progress, replay_texts, max_steps,
        texts=lambda batch: batch.dense_captions,
        steps=spec.steps, lr=spec.lr, stage="blip2 (generative stage)",
    )  # fmt: skip


def train_blip2_reading(
    model: Blip2ForConditionalGeneration,
    stream: SceneStream,
    tokenizer: PreTrainedTokenizerFast,
    spec: Blip2Spec,
    seed: int,
    progress: ProgressFn = quiet,
    replay_texts: list[list[int]] | None = None,
    max_steps: int | None = None,
) -> TrainTrace:
    """The reading stage, after the generative one (``spec.reading_steps``, 0 skips it): the same parts learn on
    fresh ``stream`` images whose text is, with probability ``spec.reading_caption_p``, the dense caption, and
    otherwise the image's reading document with the query outputs in place of its dense caption
    (``vict.zoo.corpus.reading_text``: questions with their sentence answers, then ``Question: ... Short
    answer: ...``), the text replay going on as in ``train_blip2``.

    Why (docs/tuning.md): captioning alone never shows the LM visual tokens followed by a question, and the 2-layer
    OPT does not generalise to it the way a large LM does, so the BLIP-2 answered caption fragments to
    ``Question: ... Short answer:`` (GQA-mini 31% against 36% for a question-only guess). The documents' questions
    are those of the stream's scenes, never a world's."""
    rng = random.Random(f"vict-zoo-reading:{seed}")
    torch.manual_seed(seed)  # dropout: independent of the stages before
    return _train_image_text(
        model, stream, tokenizer, spec, seed, progress, replay_texts, max_steps,
        texts=lambda batch: reading_stage_texts(batch, rng, spec.reading_caption_p),
        steps=spec.reading_steps, lr=spec.reading_lr, stage="blip2 (reading stage)",
    )  # fmt: skip


def reading_stage_texts(batch: StreamBatch, rng: random.Random, caption_p: float) -> list[str]:
    """The reading stage's text per image of ``batch``: its dense caption with probability ``caption_p`` (and when
    it has no questions), else its reading text (``vict.zoo.corpus.reading_text``), which follows the visual
    tokens where a reading document has the dense caption."""
    out = []
    for captions, questions in zip(batch.captions, batch.questions, strict=True):
        if not questions or rng.random() < caption_p:
            out.append(captions[0])
        else:
            out.append(reading_text([(q.question, q.answer, q.full_answer) for q in questions], rng))
    return out


def _train_image_text(
    model: Blip2ForConditionalGeneration,
    stream: SceneStream,
    tokenizer: PreTrainedTokenizerFast,
    spec: Blip2Spec,
    seed: int,
    progress: ProgressFn,
    replay_texts: list[list[int]] | None,
    max_steps: int | None,
    *,
    texts: Callable[[StreamBatch], list[str]],
    steps: int,
    lr: float,
    stage: str,
) -> TrainTrace:
    """``steps`` steps of ``[<image>]*q + text`` language modelling on fresh stream images (``texts`` gives each
    batch's texts), the vision encoder frozen, with the text replay of ``train_blip2``."""
    replay = replay_texts if spec.train_language_model and replay_texts else None
    replay_rng = torch.Generator().manual_seed(seed + 1)
    image_token_id = model.config.image_token_index
    q = model.config.num_query_tokens
    max_len = model.config.text_config.max_position_embeddings - q
    pad_id = tokenizer.pad_token_id
    model.vision_model.requires_grad_(False)
    model.train()
    model.vision_model.eval()
    if not spec.train_language_model:
        model.language_model.eval()  # frozen: no dropout or other train-mode behaviour
    counter = itertools.count()

    def loss_fn(_: torch.Tensor) -> torch.Tensor:
        batch = stream.batch(next(counter) * spec.batch_size, spec.batch_size)
        encoded = encode_texts(tokenizer, texts(batch), max_len)
        input_ids, mask, labels = caption_batch(encoded, q, image_token_id, pad_id)
        out = model(pixel_values=batch.pixels, input_ids=input_ids, attention_mask=mask, labels=labels)
        if replay is None:
            return out.loss
        pick = torch.randint(len(replay), (spec.batch_size,), generator=replay_rng).tolist()
        ids, text_mask, text_labels = pad_batch([replay[i] for i in pick], pad_id)
        return out.loss + model.language_model(input_ids=ids, attention_mask=text_mask, labels=text_labels).loss

    params = [p for p in model.parameters() if p.requires_grad]
    trace = run_steps(
        loss_fn,
        params,
        spec.batch_size,
        steps=steps,
        batch_size=spec.batch_size,
        lr=lr,
        seed=seed,
        stage=stage,
        progress=progress,
        max_steps=max_steps,
    )
    model.eval()
    return trace


def save_blip2(model: Blip2ForConditionalGeneration, processor: Blip2Processor, out_dir: Path) -> None:
    """Write a hub-style BLIP-2 directory: weights, config, generation config, processor and tokenizer."""
    model.generation_config.max_new_tokens = 40
    model.generation_config.eos_token_id = model.config.text_config.eos_token_id
    model.generation_config.pad_token_id = model.config.text_config.pad_token_id
    model.generation_config.bos_token_id = model.config.text_config.bos_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)  # processor_config.json + tokenizer
    # preprocessor_config.json as well, as on the hub, for loaders that read the image processor alone
    processor.image_processor.save_pretrained(out_dir)


def trainable_parameter_count(model: Blip2ForConditionalGeneration) -> int:
    """Number of parameters the generative stage trains (Q-Former + queries + projection [+ LM])."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
