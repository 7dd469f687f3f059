"""The BLIP-2 baseline path and the similarity analysis on a tiny random BLIP-2 saved like a hub checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from vict.cli import main

pytestmark = pytest.mark.integration

QUERY_TOKENS = 4


def save_tiny_blip2(out: Path) -> Path:
    """A random ``Blip2ForConditionalGeneration`` (ViT + Q-Former + OPT, hidden 32) with its processor and a
    word-level tokenizer, written as a hub-style directory (transformers 5.x: ``<image>`` tokens in the text)."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        OPTConfig,
    )
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    from vict.models.tokenizer import BUILTIN_WORDS, train_tokenizer

    tokenizer = train_tokenizer([" ".join(BUILTIN_WORDS)], vocab_size=4096)
    processor = Blip2Processor(
        BlipImageProcessorPil(size={"height": 30, "width": 30}), tokenizer, num_query_tokens=QUERY_TOKENS
    )  # adds the <image> special token to the tokenizer
    opt = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        word_embed_proj_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = Blip2VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=30, patch_size=2
    )
    qformer = Blip2QFormerConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, encoder_hidden_size=32
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=opt.to_dict(),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.5)  # zeros by default: every query would give the same token
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_blip2(tmp_path_factory.mktemp("blip2"))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for k, colour in enumerate([(255, 0, 0), (0, 128, 255), (20, 200, 20)]):
        Image.new("RGB", (40, 40), colour).save(folder / f"{k}.png")
    (folder / "notes.txt").write_text("not an image, not listed")
    return folder


def test_blip2_baseline_generates_batched_and_deterministic(tiny_blip2: Path, image_dir: Path) -> None:
    from vict.eval.blip2_baseline import Blip2Baseline

    blip2 = Blip2Baseline.from_pretrained(tiny_blip2)
    images = [Image.open(p).convert("RGB") for p in sorted(image_dir.glob("*.png"))]
    questions = ["what color is it?", "how many shapes are there in the image?", "is it red?"]
    batched = blip2.answer(images, questions, max_new_tokens=4)
    single = [blip2.answer([im], [q], max_new_tokens=4)[0] for im, q in zip(images, questions)]
    assert batched == single  # left padding does not change any row
    assert blip2.answer(images, questions, max_new_tokens=4) == batched
    with_context = blip2.answer(images, questions, contexts=["a red circle."] * 3, max_new_tokens=4)
    assert len(with_context) == 3 and all(isinstance(a, str) for a in with_context)
    tokens = blip2.visual_tokens(images)
    assert tokens.shape == (3, QUERY_TOKENS, 32)


def test_blip2_cached_image_features_give_identical_outputs(tiny_blip2: Path, image_dir: Path) -> None:
    from vict.eval.blip2_baseline import Blip2Baseline
    from vict.inference import Context
    from vict.inference.blip2 import Blip2Engine

    blip2 = Blip2Baseline.from_pretrained(tiny_blip2)
    images = [Image.open(p).convert("RGB") for p in sorted(image_dir.glob("*.png"))]
    questions = ["what color is it?", "how many shapes are there in the image?", "is it red?"]
    contexts = [None, "a red circle on the left.", "two squares"]
    features = blip2.image_features(images)
    assert features.shape == (3, QUERY_TOKENS, 32)
    assert blip2.answer(None, questions, contexts, 4, image_features=features) == blip2.answer(
        images, questions, contexts, 4
    )
    assert blip2.caption(None, max_new_tokens=4, image_features=features) == blip2.caption(images, max_new_tokens=4)
    # Through the engine: each image through the vision tower + Q-Former once, whatever the number of prompts.
    paths = [p for p in sorted(image_dir.glob("*.png"))] * 3
    asked = questions * 3
    fresh = Blip2Engine(blip2, "b", batch_size=4, max_new_tokens=4, reuse_features=False)
    reused = Blip2Engine(blip2, "b", batch_size=4, max_new_tokens=4)
    texts = [a.answer for a in reused.answer(paths, asked)]
    assert texts == [a.answer for a in fresh.answer(paths, asked)]
    assert reused.caption(paths[:3]) == fresh.caption(paths[:3])
    assert reused.cache.encoded == 3 and fresh.cache is None
    # The `self` context: its own caption first, made once per image and shared with the caption request.
    own = reused.answer(paths, asked, Context.own_caption())
    assert [a.caption for a in own] == reused.caption(paths)
    given = reused.answer(
        paths, asked, [Context.given_caption(c) if c else Context.none() for c in reused.caption(paths)]
    )
    assert [a.answer for a in own] == [a.answer for a in given]
    assert own[0].prompt == blip2.prompt(asked[0], own[0].caption) and reused.cache.encoded == 3
    # a plain BLIP-2 answers about an image only: a text-only question is refused, naming it
    with pytest.raises(ValueError, match=r"no image at position\(s\) \[1\]: b answers questions about an image"):
        reused.answer([paths[0], None], asked[:2])


def test_similarity_cli_on_tiny_blip2(tiny_blip2: Path, image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    rc = main(["analyze", "similarity", "--blip2", str(tiny_blip2), "--images", str(image_dir), "--out", str(out)])
    assert rc == 0
    png = out / "similarity.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    payload = json.loads((out / "similarity.json").read_text())
    (series,) = payload["series"].values()
    assert series["images"] == 3 and series["tokens_per_image"] == QUERY_TOKENS
    values = [r["similarity"] for r in series["per_token"]]
    assert len(values) == 3 * QUERY_TOKENS and all(-1.0 <= v <= 1.0 for v in values)
    stats = series["stats"]
    assert stats["max"] == pytest.approx(max(values)) and stats["mean"] == pytest.approx(sum(values) / len(values))
    assert all(isinstance(r["nearest_word"], str) and r["nearest_word"] for r in series["per_token"])
    assert "most word-like tokens" in (out / "report.md").read_text()


def test_vocabulary_rows_score_one_against_blip2_embeddings(tiny_blip2: Path) -> None:
    from vict.eval.analyze_cli import analyze_series
    from vict.eval.blip2_baseline import Blip2Baseline

    blip2 = Blip2Baseline.from_pretrained(tiny_blip2)
    emb = blip2.input_embeddings()
    ids = torch.tensor([5, 17, 40, 41])
    series = analyze_series(emb[ids].reshape(2, 2, -1), emb, blip2.tokenizer)
    assert series["stats"]["min"] == pytest.approx(1.0, abs=1e-5)
    assert [r["nearest_word"] for r in series["per_token"]] == blip2.tokenizer.convert_ids_to_tokens(ids.tolist())


def test_similarity_cli_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["analyze", "similarity", "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--blip2" in capsys.readouterr().err
    rc = main(["analyze", "similarity", "--blip2", "x", "--images", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_eval_blip2_baseline_rows(tiny_blip2: Path, tmp_path: Path) -> None:
    from vict.data.world.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, images=20, seed=1)
    out = tmp_path / "eval"
    args = ["eval", "--blip2", str(tiny_blip2), "--data", str(world), "--out", str(out), "--fast"]
    assert main([*args, "--max-new-tokens", "3", "--batch-size", "4"]) == 0
    report = json.loads((out / "report.json").read_text())
    (r,) = report["models"].values()
    assert r["kind"] == "blip2" and r["n_images"] == 2
    assert list(r["gqa"]) == ["none", "caption", "self", "qa", "dense", "distractor"] and r["gqa_sentence"] is None
    assert r["caption"]["n"] == 2 and r["caption"]["BLEU-1"] is not None
    preds = json.loads(Path(r["predictions"]["gqa_caption_test_predictions.json"]).read_text())
    assert len(preds) == r["n_questions"] and all(isinstance(p["prediction"], str) for p in preds)
    md = (out / "report.md").read_text()
    assert "BLIP-2" in md and "no sentence-answer score" in md


def test_blip2_prompts() -> None:
    from vict.eval.blip2_baseline import BLIP2_CONTEXT_QA_PROMPT, BLIP2_QA_PROMPT

    assert BLIP2_QA_PROMPT.format("is it red?") == "Question: is it red? Short answer:"
    assert (
        BLIP2_CONTEXT_QA_PROMPT.format("A red circle.", "is it red?")
        == "A red circle. Question: is it red? Short answer:"
    )
