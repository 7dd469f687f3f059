"""``build_zoo``: the miniature model zoo, made the way the real parts were made, cached by config hash.

Data flow (every image and text comes from the in-memory scene stream, ``vict.zoo.stream``, never from a world):
1. text: documents about stream scenes (``vict.zoo.corpus``) -> two tokenizers (word-level, byte-level BPE);
2. source LM (OPT) and target LM (LLaMA): pretrained on those documents, each with its tokenizer, text only;
3. vision encoder: dense attribute pretraining on fresh stream images (``vict.zoo.vision_pretrain``);
4. BLIP-2's stage 1 in miniature: the Q-Former and queries learn to extract every cell's attributes from the frozen
   vision encoder (``vict.zoo.vision_pretrain.pretrain_qformer``);
5. BLIP-2's generative stage: Q-Former, queries and projection learn to caption fresh stream images through the
   frozen vision encoder and the source OPT (tuned with its text replayed, ``Blip2Spec.train_language_model``;
   ``vict.zoo.blip2``);
6. optionally (``Blip2Spec.reading_steps``; 0 in the shipped presets, BLIP-2's captioning-only recipe) a reading
   stage: the same parts go on learning on fresh stream images whose text is the dense caption or the image's
   reading document with the query outputs in place of its dense caption (``train_blip2_reading``), so the BLIP-2
   answers ``Question: ... Short answer:`` from the image as its LM answers from a dense caption (docs/tuning.md);
7. quality on held-out stream images (another stream seed): caption token accuracy by attribute and CIDEr.

Layout of a build, ``<out>/<key>/``:
- ``blip2/``: a Hugging Face BLIP-2 directory (tiny ViT + Q-Former + the source OPT), loadable by
  ``Blip2ForConditionalGeneration.from_pretrained`` / ``Blip2Processor.from_pretrained`` and by
  ``vict.models.vpg.VisualPromptGenerator.from_pretrained``;
- ``source_lm/``: the source OPT alone with its word-level tokenizer (with ``<image>``);
- ``target_lm/``: the target LLaMA with its byte-level BPE tokenizer, the LM that VICT gives eyes to;
- ``zoo.json``: the resolved config, stream seeds, losses, held-out quality and timings.

Same config + seed -> the same key and bit-identical weights (fixed seeds per stage and a fixed ``torch``
thread count; the first losses of every stage are recorded so that a short build prefix can check it).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import Blip2ForConditionalGeneration

from vict.zoo import blip2 as blip2_lib
from vict.zoo import lm
from vict.zoo.cache import MANIFEST, atomic_folder, cache_key, is_complete
from vict.zoo.corpus import stream_documents
from vict.zoo.presets import ZooConfig, get_preset
from vict.zoo.quality import caption_quality
from vict.zoo.stream import STREAM_NAMESPACE, SceneStream
from vict.zoo.training import ProgressFn, TrainTrace
from vict.zoo.vision_pretrain import pretrain_qformer, pretrain_vision

PREFIX_LOSSES = 20
"""Losses of the first steps of every stage recorded in ``zoo.json``: a build prefix must reproduce them."""


@dataclass(frozen=True)
class ZooPaths:
    """Where a built zoo lives. ``reused`` tells whether this call found it in the cache."""

    root: Path
    blip2_dir: Path
    source_lm_dir: Path
    target_lm_dir: Path
    manifest_path: Path
    key: str
    reused: bool

    @classmethod
    def at(cls, root: Path, reused: bool) -> ZooPaths:
        root = Path(root)
        return cls(
            root=root,
            blip2_dir=root / "blip2",
            source_lm_dir=root / "source_lm",
            target_lm_dir=root / "target_lm",
            manifest_path=root / MANIFEST,
            key=root.name,
            reused=reused,
        )

    def manifest(self) -> dict[str, Any]:
        """The build's ``zoo.json`` (config, world fingerprint, losses, quality, timings)."""
        return json.loads(self.manifest_path.read_text())


def _print(line: str) -> None:
    print(line, flush=True)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def zoo_key(config: ZooConfig, seed: int) -> str:
    """The cache key of building ``config`` with ``seed`` (see ``vict.zoo.cache``)."""
    return cache_key(config.to_dict(), seed)


STREAM_SEEDS: dict[str, int] = {"text": 1, "vision": 2, "blip2": 3, "eval": 4, "qformer": 5, "reading": 6}
"""Stream seed of each stage is ``seed * 1000 + offset`` (``eval`` is held out from every training stage)."""


def stream_seed(seed: int, stage: str) -> int:
    return seed * 1000 + STREAM_SEEDS[stage]


def build_zoo(
    out_dir: Path,
    preset: str | ZooConfig = "default",
    seed: int = 0,
    progress: ProgressFn = _print,
    max_steps: int | None = None,
    reference: ZooPaths | None = None,
) -> ZooPaths:
    """Build the zoo into ``out_dir/<key>/``, or reuse it if that build exists.

    Args:
        out_dir: the zoo cache folder (``vict quickstart`` uses ``OUT/zoo``).
        preset: ``"micro"``, ``"fast"``, ``"default"`` or a ``ZooConfig``.
        seed: seed of every random choice of the build (the shipped zoo is seed 0).
        progress: receives progress lines (stage, step, loss, time left); ``vict.zoo.training.quiet`` to mute.
        max_steps: build only the first ``max_steps`` steps of every training stage, on the full schedules, into
            ``out_dir/<key>-prefix<max_steps>/`` (the reproducibility check: its losses are the first losses of
            the full build, recorded in ``zoo.json``).
        reference: with ``max_steps``, the full build whose first losses the prefix must reproduce: the Q-Former
            stages then start from its vision encoder and source LM (the inputs the full build's had), so the
            prefixes of the LM, vision and stage-1 stages are checked (the generative stage starts from the stage-1
            Q-Former, which no build keeps).

    Returns:
        The paths of the build; ``reused`` is True when nothing had to be trained.
    """
    out_dir = Path(out_dir)
    config = get_preset(preset) if isinstance(preset, str) else preset
    key = zoo_key(config, seed)
    final = out_dir / (key if max_steps is None else f"{key}-prefix{max_steps}")
    if is_complete(final):
        progress(f"zoo: reusing {final} (preset {config.name}, seed {seed}; config unchanged)")
        return ZooPaths.at(final, reused=True)
    progress(f"zoo: building {final} (preset {config.name}, seed {seed})")
    with _torch_threads(config.num_threads), atomic_folder(final) as tmp:
        manifest = _build_into(tmp, config, seed, progress, max_steps, reference if max_steps else None)
        manifest["key"] = key
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return ZooPaths.at(final, reused=False)


def _held_out(config: ZooConfig, seed: int, tokenizer, max_len: int) -> tuple[torch.Tensor, list, list]:
    """Held-out stream images (their own stream seed): pixels, dense-caption ids, the five reference captions."""
    batch = SceneStream(stream_seed(seed, "eval"), config.blip2.image_size).batch(0, config.eval_images)
    return batch.pixels, lm.encode_texts(tokenizer, batch.dense_captions, max_len), batch.captions


def _build_into(
    root: Path,
    config: ZooConfig,
    seed: int,
    progress: ProgressFn,
    max_steps: int | None,
    reference: ZooPaths | None,
) -> dict[str, Any]:
    """Train and save every model into ``root``; return the manifest."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    docs = stream_documents(stream_seed(seed, "text"), config.text_scenes)
    split = max(1, len(docs) // 20)
    train_docs, val_docs = docs[split:], docs[:split]

    # 1. tokenizers: different kinds, so the VPG transfer crosses a real vocabulary gap
    source_tok = lm.build_tokenizer(train_docs, config.source_lm)
    processor = blip2_lib.make_processor(source_tok, config.blip2)  # adds <image> to the source tokenizer
    image_token_id = source_tok.convert_tokens_to_ids(blip2_lib.IMAGE_TOKEN)
    target_tok = lm.build_tokenizer(train_docs, config.target_lm)
    timings["text_and_tokenizers"] = time.perf_counter() - t0
    progress(
        f"zoo: {len(docs)} stream documents; tokenizers: source {config.source_lm.tokenizer} {len(source_tok)} "
        f"tokens, target {config.target_lm.tokenizer} {len(target_tok)} tokens"
    )

    # 2. source LM (OPT), pretrained on the stream's documents
    t = time.perf_counter()
    source_lm = lm.build_opt(config.source_lm, len(source_tok), source_tok, seed * 1000 + 1)
    source_before = lm.heldout_loss(source_lm, source_tok, val_docs, config.source_lm.max_positions)
    source_trace = lm.pretrain_lm(
        source_lm, source_tok, train_docs, config.source_lm, seed * 1000 + 2, "zoo source LM (OPT)", progress,
        max_steps=max_steps,
    )  # fmt: skip
    source_after = lm.heldout_loss(source_lm, source_tok, val_docs, config.source_lm.max_positions)
    timings["source_lm"] = time.perf_counter() - t

    # 3. target LM (LLaMA), pretrained on the same documents with its own tokenizer, never on images
    t = time.perf_counter()
    target_lm = lm.build_llama(config.target_lm, len(target_tok), target_tok, seed * 1000 + 3)
    target_before = lm.heldout_loss(target_lm, target_tok, val_docs, config.target_lm.max_positions)
    target_trace = lm.pretrain_lm(
        target_lm, target_tok, train_docs, config.target_lm, seed * 1000 + 4, "zoo target LM (LLaMA)", progress,
        max_steps=max_steps,
    )  # fmt: skip
    target_after = lm.heldout_loss(target_lm, target_tok, val_docs, config.target_lm.max_positions)
    target_lm.save_pretrained(root / "target_lm")
    target_tok.save_pretrained(root / "target_lm")
    timings["target_lm"] = time.perf_counter() - t

    # 4. BLIP-2 stage 0: the vision encoder, pretrained on the scene stream with dense attribute targets
    t = time.perf_counter()
    spec = config.blip2
    model = blip2_lib.build_blip2(spec, source_lm, image_token_id, seed * 1000 + 5)
    vision_trace, vision_accuracy = pretrain_vision(
        model,
        spec,
        seed=stream_seed(seed, "vision"),
        held_out_seed=stream_seed(seed, "eval"),
        progress=progress,
        max_steps=max_steps,
    )
    timings["vision"] = time.perf_counter() - t
    progress(f"zoo: vision encoder, held-out stream cell accuracy (%): {vision_accuracy}")

    if reference is not None:  # a prefix check: the next stages start where the full build's started
        full = Blip2ForConditionalGeneration.from_pretrained(reference.blip2_dir)
        model.vision_model.load_state_dict(full.vision_model.state_dict())
        if not spec.train_language_model:
            model.language_model.load_state_dict(full.language_model.state_dict())

    # 5. BLIP-2's stage 1 in miniature: the Q-Former and queries learn to extract every cell's attributes
    t = time.perf_counter()
    qformer_trace, qformer_accuracy = pretrain_qformer(
        model,
        spec,
        seed=stream_seed(seed, "qformer"),
        held_out_seed=stream_seed(seed, "eval"),
        progress=progress,
        max_steps=max_steps,
    )
    timings["qformer"] = time.perf_counter() - t
    progress(f"zoo: Q-Former, held-out stream cell accuracy from the query outputs (%): {qformer_accuracy}")

    # 6. BLIP-2's generative stage: Q-Former + queries + projection caption fresh stream images
    t = time.perf_counter()
    max_len = config.source_lm.max_positions - spec.num_query_tokens
    val_pixels, val_caps, val_refs = _held_out(config, seed, source_tok, max_len)
    untrained = caption_quality(model, source_tok, val_pixels, val_caps, val_refs)
    replay = lm.encode_texts(source_tok, train_docs, config.source_lm.max_positions)

    def image_text_stage(train: Callable[..., TrainTrace], stream: str, seed_offset: int) -> TrainTrace:
        images = SceneStream(stream_seed(seed, stream), spec.image_size)
        return train(
            model, images, source_tok, spec, seed * 1000 + seed_offset, progress, replay_texts=replay,
            max_steps=max_steps,
        )  # fmt: skip

    blip2_trace = image_text_stage(blip2_lib.train_blip2, "blip2", 6)
    quality = {"untrained": untrained}
    reading_trace = None
    if spec.reading_steps:  # the optional reading stage: query outputs where reading documents have the caption
        quality["after_generative_stage"] = caption_quality(model, source_tok, val_pixels, val_caps, val_refs)
        reading_trace = image_text_stage(blip2_lib.train_blip2_reading, "reading", 7)
    trained = quality["trained"] = caption_quality(model, source_tok, val_pixels, val_caps, val_refs)
    blip2_lib.save_blip2(model, processor, root / "blip2")
    # The source LM directory holds exactly the LM inside the BLIP-2 (frozen, or tuned in the generative stages).
    final_source_lm = model.language_model
    final_source_lm.save_pretrained(root / "source_lm")
    source_tok.save_pretrained(root / "source_lm")
    source_after_captioning = lm.heldout_loss(final_source_lm, source_tok, val_docs, config.source_lm.max_positions)
    timings["blip2"] = time.perf_counter() - t
    acc = trained["token_accuracy"]
    progress(
        f"zoo: BLIP-2 on {config.eval_images} held-out stream images: colour {acc['colour']:.0f}% / shape "
        f"{acc['shape']:.0f}% / size {acc['size']:.0f}% / position {acc['position']:.0f}% token accuracy, "
        f"CIDEr {trained['cider']:.1f} (untrained {untrained['cider']:.1f})"
    )
    timings["total"] = time.perf_counter() - t0
    traces = {
        "source_lm": source_trace,
        "target_lm": target_trace,
        "vision": vision_trace,
        "qformer": qformer_trace,
        "blip2": blip2_trace,
        **({"blip2_reading": reading_trace} if reading_trace is not None else {}),
    }
    return {
        "config": config.to_dict(),
        "seed": seed,
        "max_steps": max_steps,
        "stream": {
            "namespace": STREAM_NAMESPACE,
            "seeds": {stage: stream_seed(seed, stage) for stage in STREAM_SEEDS},
            "text_documents": len(docs),
            "vision_images": len(vision_trace.losses) * spec.vision_batch_size,
            "blip2_images": len(blip2_trace.losses) * spec.batch_size,
            **(
                {"blip2_reading_images": len(reading_trace.losses) * spec.batch_size}
                if reading_trace is not None
                else {}
            ),
        },
        "first_losses": {name: trace.losses[:PREFIX_LOSSES] for name, trace in traces.items()},
        "source_lm": {
            "architecture": "OPTForCausalLM",
            "tokenizer": config.source_lm.tokenizer,
            "vocab_size": len(source_tok),
            "parameters": sum(p.numel() for p in source_lm.parameters()),
            "train": source_trace.summary(),
            "val_loss_before": round(source_before, 4),
            "val_loss_after": round(source_after, 4),
            "tuned_by_captioning": spec.train_language_model,
            "val_loss_after_captioning": round(source_after_captioning, 4),
        },
        "target_lm": {
            "architecture": "LlamaForCausalLM",
            "tokenizer": config.target_lm.tokenizer,
            "vocab_size": len(target_tok),
            "parameters": sum(p.numel() for p in target_lm.parameters()),
            "train": target_trace.summary(),
            "val_loss_before": round(target_before, 4),
            "val_loss_after": round(target_after, 4),
        },
        "vision": {
            "parameters": sum(p.numel() for p in model.vision_model.parameters()),
            "train": vision_trace.summary(),
            "held_out_cell_accuracy": vision_accuracy,
        },
        "qformer": {"train": qformer_trace.summary(), "held_out_cell_accuracy": qformer_accuracy},
        "blip2": {
            "image_token_index": image_token_id,
            "num_query_tokens": spec.num_query_tokens,
            "trained_parameters": blip2_lib.trainable_parameter_count(model),
            "train": blip2_trace.summary(),
            **({"reading_train": reading_trace.summary()} if reading_trace is not None else {}),
            "quality_val": quality,
        },
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
