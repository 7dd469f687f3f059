"""``vict analyze similarity``: how word-like are the visual tokens an LLM receives (the paper's Figure 2)?

For each image and each Q-Former output token, projected into an LLM's input-embedding space, the highest cosine
similarity to any row of that LLM's input embedding matrix, and the nearest vocabulary entry.

- ``--blip2 DIR``: BLIP-2's own tokens, through its ``language_projection``, against its own LM's embeddings.
- ``--checkpoint VICT_DIR``: a VICT model's tokens (original + extra queries), through its trained projection,
  against the target LLM's embeddings (``--llm DIR`` overrides which LLM's embedding matrix and tokenizer are
  used; it must have the same hidden size). With both, the two series are overlaid in one histogram.

Writes ``OUT/similarity.png``, ``OUT/similarity.json`` (stats and per-token nearest words) and ``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from vict.eval.report import markdown_table, write_json, write_text
from vict.eval.similarity import (
    THRESHOLD,
    max_cosine_similarity,
    nearest_words,
    plot_similarity_histogram,
    similarity_stats,
    token_table,
)

EPILOG = """examples:
  vict analyze similarity --blip2 zoo/blip2 --images world/images --out runs/similarity --limit 50
  vict analyze similarity --blip2 zoo/blip2 --checkpoint runs/vict_lora --images world/images --out runs/sim
  vict analyze similarity --blip2 Salesforce/blip2-opt-2.7b --images coco/val2014 --out sim --limit 100

outputs: similarity.png (histogram, one series per model), similarity.json (mean, median, max, fraction above 0.5,
and the nearest word of every token), report.md.
"""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``vict analyze similarity``."""
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    sim = sub.add_parser("similarity", help="max cosine similarity of visual tokens to the LLM vocabulary")
    sim.add_argument("--blip2", help="BLIP-2 directory or hub id (its own projection and LM)")
    sim.add_argument("--checkpoint", help="VICT checkpoint directory (its projection and target LLM)")
    sim.add_argument("--llm", help="with --checkpoint: use this LLM's embeddings and tokenizer instead")
    sim.add_argument("--images", required=True, help="folder of images (png/jpg), read in sorted order")
    sim.add_argument("--out", required=True, help="output folder")
    sim.add_argument("--limit", type=int, default=100, help="at most this many images (default 100)")
    sim.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    sim.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files directly under ``folder`` (sorted by name), at most ``limit``; errors name the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"--images {folder}: no {'/'.join(IMAGE_SUFFIXES)} files")
    return paths[:limit] if limit else paths


def _batched_tokens(encode, images: list, batch_size: int) -> torch.Tensor:
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc="visual tokens", leave=False, disable=None):
        chunks.append(encode(images[start : start + batch_size]).float().cpu())
    return torch.cat(chunks)  # (n_images, n_tokens, d)


def analyze_series(tokens: torch.Tensor, embeddings: torch.Tensor, tokenizer: Any) -> dict[str, Any]:
    """Stats and per-token nearest words for visual tokens ``(n_images, n_tokens, d)`` against ``(V, d)``."""
    n_images, n_tokens, _ = tokens.shape
    values, indices = max_cosine_similarity(tokens.reshape(n_images * n_tokens, -1), embeddings.float().cpu())
    words = nearest_words(indices, tokenizer)
    return {
        "stats": similarity_stats(values),
        "tokens_per_image": n_tokens,
        "images": n_images,
        "vocab_size": int(embeddings.shape[0]),
        "values": values,
        "per_token": token_table(values, words, n_tokens),
    }


def blip2_series(source: str, images: list, batch_size: int, device: str) -> dict[str, Any]:
    """The BLIP-2 series: its projected Q-Former outputs against its own LM's input embeddings."""
    from vict.eval.blip2_baseline import Blip2Baseline

    blip2 = Blip2Baseline.from_pretrained(source, device=device, require_processor=False)
    tokens = _batched_tokens(blip2.visual_tokens, images, batch_size)
    return analyze_series(tokens, blip2.input_embeddings(), blip2.tokenizer)


def vict_series(checkpoint: str, llm: str | None, images: list, batch_size: int, device: str) -> dict[str, Any]:
    """The VICT series: the checkpoint's projected VPG outputs against the target LLM's input embeddings."""
    from vict.models.vision_llm import VisionLLM

    model = VisionLLM.from_pretrained(checkpoint).to(device).eval()

    @torch.no_grad()
    def encode(batch: list) -> torch.Tensor:
        pixel_values = model.vpg.preprocess(batch).to(device)
        return model.encode_images(pixel_values).tokens

    tokens = _batched_tokens(encode, images, batch_size)
    tokenizer = model.tokenizer
    embeddings = model.llm.get_input_embeddings().weight.detach()
    if llm:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        other = AutoModelForCausalLM.from_pretrained(llm)
        embeddings = other.get_input_embeddings().weight.detach()
        tokenizer = AutoTokenizer.from_pretrained(llm)
        if embeddings.shape[1] != tokens.shape[-1]:
            raise ValueError(
                f"--llm {llm}: hidden size {embeddings.shape[1]} != the checkpoint projection's {tokens.shape[-1]}; "
                "pass the LLM the checkpoint was trained for (or omit --llm)"
            )
    return analyze_series(tokens, embeddings, tokenizer)


def report_markdown(series: dict[str, dict[str, Any]], plot_name: str, top_k: int = 10) -> str:
    """``report.md``: a stats table per series and the most word-like tokens with their nearest words."""
    key = f"frac_above_{THRESHOLD}"
    lines = ["# Visual token / vocabulary similarity", "", f"![histogram]({plot_name})", ""]
    rows = [
        [
            name,
            s["images"],
            s["tokens_per_image"],
            s["stats"]["mean"],
            s["stats"]["median"],
            s["stats"]["max"],
            s["stats"][key],
        ]
        for name, s in series.items()
    ]
    header = ["model", "images", "tokens/image", "mean", "median", "max", f"fraction > {THRESHOLD}"]
    lines += [markdown_table(header, rows, digits=3), ""]
    for name, s in series.items():
        best = sorted(s["per_token"], key=lambda r: -r["similarity"])[:top_k]
        lines += [f"## {name}: the {len(best)} most word-like tokens", ""]
        table_rows = [[r["image"], r["token"], r["similarity"], r["nearest_word"]] for r in best]
        lines += [markdown_table(["image", "token", "similarity", "nearest word"], table_rows, digits=3), ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Compute the series, write the PNG, JSON and markdown. Exit 2 on bad input."""
    from PIL import Image

    if not args.blip2 and not args.checkpoint:
        print("vict analyze similarity: error: pass --blip2 DIR and/or --checkpoint VICT_DIR", file=sys.stderr)
        return 2
    if args.llm and not args.checkpoint:
        print("vict analyze similarity: error: --llm only applies with --checkpoint", file=sys.stderr)
        return 2
    try:
        paths = list_images(args.images, args.limit)
        images = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except OSError as e:
                raise FileNotFoundError(f"{p}: not a readable image ({e})") from e
        series: dict[str, dict[str, Any]] = {}
        if args.blip2:
            series[f"BLIP-2 ({Path(args.blip2).name})"] = blip2_series(
                args.blip2, images, args.batch_size, args.device
            )
        if args.checkpoint:
            name = f"VICT ({Path(args.checkpoint).name})"
            series[name] = vict_series(args.checkpoint, args.llm, images, args.batch_size, args.device)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"vict analyze similarity: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    plot = plot_similarity_histogram({k: v["values"] for k, v in series.items()}, out / "similarity.png")
    payload = {
        "images": [str(p) for p in paths],
        "threshold": THRESHOLD,
        "series": {k: {kk: vv for kk, vv in v.items() if kk != "values"} for k, v in series.items()},
    }
    write_json(out / "similarity.json", payload)
    write_text(out / "report.md", report_markdown(series, plot.name))
    for name, s in series.items():
        st = s["stats"]
        print(
            f"{name}: {s['images']} images x {s['tokens_per_image']} tokens: mean {st['mean']:.3f}, median "
            f"{st['median']:.3f}, max {st['max']:.3f}, fraction > {THRESHOLD}: {st[f'frac_above_{THRESHOLD}']:.3f}"
        )
    print(f"wrote {plot}, {out / 'similarity.json'}, {out / 'report.md'}")
    return 0
