"""``build_zoo``: the miniature model zoo, built from a world folder and cached by config hash.

Layout of a build, ``<out>/zoo/<key>/``:
- ``blip2/``: a Hugging Face BLIP-2 directory (tiny ViT + Q-Former + the source OPT), loadable by
  ``Blip2ForConditionalGeneration.from_pretrained`` / ``Blip2Processor.from_pretrained`` and by
  ``vict.models.vpg.VisualPromptGenerator.from_pretrained``;
- ``source_lm/``: the source OPT alone with its word-level tokenizer (with ``<image>``);
- ``target_lm/``: the target LLaMA with its byte-level BPE tokenizer, the LM that VICT gives eyes to;
- ``zoo.json``: the resolved config, the world fingerprint, losses, held-out quality and timings.

Same world + config + seed -> the same key and bit-identical weights (fixed seeds per stage and a fixed
``torch`` thread count; verified by a test).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from vict.zoo import blip2 as blip2_lib
from vict.zoo import lm
from vict.zoo.cache import MANIFEST, atomic_folder, cache_key, is_complete, world_fingerprint
from vict.zoo.presets import ZooConfig, get_preset
from vict.zoo.quality import caption_quality
from vict.zoo.training import ProgressFn
from vict.zoo.world_text import load_pixels, load_split, split_texts


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


def zoo_key(world_dir: Path, config: ZooConfig, seed: int) -> str:
    """The cache key of building ``config`` with ``seed`` on ``world_dir`` (see ``vict.zoo.cache``)."""
    return cache_key(config.to_dict(), seed, world_fingerprint(world_dir))


def build_zoo(
    world_dir: Path,
    out_dir: Path,
    preset: str | ZooConfig = "default",
    seed: int = 0,
    progress: ProgressFn = _print,
) -> ZooPaths:
    """Build the zoo for ``world_dir`` into ``out_dir/zoo/<key>/``, or reuse it if that build exists.

    Args:
        world_dir: a world written by ``vict data world`` (COCO captions + GQA questions + images).
        out_dir: output folder (the zoo goes to its ``zoo/`` subfolder).
        preset: ``"micro"``, ``"fast"``, ``"default"`` or a ``ZooConfig``.
        seed: seed of every random choice of the build.
        progress: receives progress lines (stage, step, loss, time left); ``vict.zoo.training.quiet`` to mute.

    Returns:
        The paths of the build; ``reused`` is True when nothing had to be trained.
    """
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    config = get_preset(preset) if isinstance(preset, str) else preset
    key = zoo_key(world_dir, config, seed)
    final = out_dir / "zoo" / key
    if is_complete(final):
        progress(f"zoo: reusing {final} (preset {config.name}, seed {seed}; config and world unchanged)")
        return ZooPaths.at(final, reused=True)
    progress(f"zoo: building {final} (preset {config.name}, seed {seed})")
    with _torch_threads(config.num_threads), atomic_folder(final) as tmp:
        manifest = _build_into(tmp, world_dir, config, seed, progress)
        manifest["key"] = key
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return ZooPaths.at(final, reused=False)


def _build_into(root: Path, world_dir: Path, config: ZooConfig, seed: int, progress: ProgressFn) -> dict[str, Any]:
    """Train and save every model into ``root``; return the manifest."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train = load_split(world_dir, "train")
    val = load_split(world_dir, "val")[: config.eval_images]
    if not val:
        raise ValueError(f"{world_dir}: the val split is empty; generate a world with at least 10 images")
    train_texts, val_texts = split_texts(train), split_texts(val)

    # 1. tokenizers: different kinds, so the VPG transfer crosses a real vocabulary gap
    source_tok = lm.build_tokenizer(train_texts, config.source_lm)
    processor = blip2_lib.make_processor(source_tok, config.blip2)  # adds <image> to the source tokenizer
    image_token_id = source_tok.convert_tokens_to_ids(blip2_lib.IMAGE_TOKEN)
    target_tok = lm.build_tokenizer(train_texts, config.target_lm)
    timings["tokenizers"] = time.perf_counter() - t0
    progress(
        f"zoo: tokenizers: source {config.source_lm.tokenizer} {len(source_tok)} tokens, "
        f"target {config.target_lm.tokenizer} {len(target_tok)} tokens"
    )

    # 2. source LM (OPT), pretrained on the world's text
    t = time.perf_counter()
    source_lm = lm.build_opt(config.source_lm, len(source_tok), source_tok, seed * 1000 + 1)
    source_before = lm.heldout_loss(source_lm, source_tok, val_texts, config.source_lm.max_positions)
    source_trace = lm.pretrain_lm(
        source_lm, source_tok, train_texts, config.source_lm, seed * 1000 + 2, "zoo source LM (OPT)", progress
    )
    source_after = lm.heldout_loss(source_lm, source_tok, val_texts, config.source_lm.max_positions)
    timings["source_lm"] = time.perf_counter() - t

    # 3. target LM (LLaMA), pretrained on the same text with its own tokenizer, never on images
    t = time.perf_counter()
    target_lm = lm.build_llama(config.target_lm, len(target_tok), target_tok, seed * 1000 + 3)
    target_before = lm.heldout_loss(target_lm, target_tok, val_texts, config.target_lm.max_positions)
    target_trace = lm.pretrain_lm(
        target_lm, target_tok, train_texts, config.target_lm, seed * 1000 + 4, "zoo target LM (LLaMA)", progress
    )
    target_after = lm.heldout_loss(target_lm, target_tok, val_texts, config.target_lm.max_positions)
    target_lm.save_pretrained(root / "target_lm")
    target_tok.save_pretrained(root / "target_lm")
    timings["target_lm"] = time.perf_counter() - t

    # 4. BLIP-2: ViT + Q-Former + queries + projection (+ source LM, with text replay) trained on dense captions
    t = time.perf_counter()
    model = blip2_lib.build_blip2(config.blip2, source_lm, image_token_id, seed * 1000 + 5)
    train_pixels = load_pixels(train, processor.image_processor)
    val_pixels = load_pixels(val, processor.image_processor)
    max_len = config.source_lm.max_positions - config.blip2.num_query_tokens
    train_caps = lm.encode_texts(source_tok, [im.dense_caption for im in train], max_len)
    val_caps = lm.encode_texts(source_tok, [im.dense_caption for im in val], max_len)
    val_refs = [im.captions for im in val]
    untrained = caption_quality(model, source_tok, val_pixels, val_caps, val_refs)
    blip2_trace = blip2_lib.train_blip2(
        model,
        train_pixels,
        train_caps,
        config.blip2,
        source_tok.pad_token_id,
        seed * 1000 + 6,
        progress,
        replay_texts=lm.encode_texts(source_tok, train_texts, max_len),
    )
    trained = caption_quality(model, source_tok, val_pixels, val_caps, val_refs)
    blip2_lib.save_blip2(model, processor, root / "blip2")
    # The source LM directory holds exactly the LM inside the BLIP-2 (tuned by captioning unless frozen).
    final_source_lm = model.language_model
    final_source_lm.save_pretrained(root / "source_lm")
    source_tok.save_pretrained(root / "source_lm")
    source_after_captioning = lm.heldout_loss(final_source_lm, source_tok, val_texts, config.source_lm.max_positions)
    timings["blip2"] = time.perf_counter() - t
    acc = trained["token_accuracy"]
    progress(
        f"zoo: BLIP-2 on {len(val)} held-out images: colour {acc['colour']:.0f}% / shape {acc['shape']:.0f}% "
        f"token accuracy (untrained {untrained['token_accuracy']['colour']:.0f}% / "
        f"{untrained['token_accuracy']['shape']:.0f}%), CIDEr {trained['cider']:.1f} (untrained {untrained['cider']:.1f})"
    )
    timings["total"] = time.perf_counter() - t0
    return {
        "config": config.to_dict(),
        "seed": seed,
        "world": {"dir": str(world_dir), "fingerprint": world_fingerprint(world_dir), "train_images": len(train)},
        "source_lm": {
            "architecture": "OPTForCausalLM",
            "tokenizer": config.source_lm.tokenizer,
            "vocab_size": len(source_tok),
            "parameters": sum(p.numel() for p in source_lm.parameters()),
            "train": source_trace.summary(),
            "val_loss_before": round(source_before, 4),
            "val_loss_after": round(source_after, 4),
            "tuned_by_captioning": config.blip2.train_language_model,
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
        "blip2": {
            "image_token_index": image_token_id,
            "num_query_tokens": config.blip2.num_query_tokens,
            "trained_parameters": blip2_lib.trainable_parameter_count(model),
            "train": blip2_trace.summary(),
            "quality_val": {"untrained": untrained, "trained": trained},
        },
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
