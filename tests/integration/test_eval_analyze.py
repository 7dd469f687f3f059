"""`vict analyze similarity` with a VICT checkpoint (its projection, the target LLM) beside its source BLIP-2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vict.cli import main

pytestmark = pytest.mark.integration


def test_similarity_vict_and_blip2_series(tmp_path: Path) -> None:
    from vict.models.builders import build_tiny

    model = build_tiny("lora", num_extra_queries=4, seed=0)
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        Image.new("RGB", (32, 32), (80 * k, 255 - 80 * k, 40)).save(images / f"{k}.png")
    out = tmp_path / "sim"
    args = ["analyze", "similarity", "--checkpoint", str(ckpt), "--blip2", model.config.vpg_source]
    assert main([*args, "--images", str(images), "--out", str(out), "--limit", "2"]) == 0
    payload = json.loads((out / "similarity.json").read_text())
    vict = next(v for k, v in payload["series"].items() if k.startswith("VICT"))
    blip2 = next(v for k, v in payload["series"].items() if k.startswith("BLIP-2"))
    assert vict["images"] == blip2["images"] == 2
    assert vict["tokens_per_image"] == model.num_visual_tokens  # original + extra queries
    assert vict["vocab_size"] == model.llm.get_input_embeddings().weight.shape[0]
    values = [r["similarity"] for r in vict["per_token"]]
    assert len(values) == 2 * model.num_visual_tokens and all(-1 <= v <= 1 for v in values)
    assert (out / "similarity.png").stat().st_size > 1000
    # --llm names the LLM whose embeddings are compared; the checkpoint's own (frozen, LoRA on q/v) gives the same.
    other = tmp_path / "sim_llm"
    args = ["analyze", "similarity", "--checkpoint", str(ckpt), "--llm", model.config.llm_source]
    assert main([*args, "--images", str(images), "--out", str(other), "--limit", "2"]) == 0
    (again,) = json.loads((other / "similarity.json").read_text())["series"].values()
    assert again["stats"] == pytest.approx(vict["stats"]) and again["per_token"] == vict["per_token"]


def test_llm_without_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    rc = main(
        ["analyze", "similarity", "--blip2", "b", "--llm", "x", "--images", str(tmp_path), "--out", str(tmp_path)]
    )
    assert rc == 2 and "--llm only applies with --checkpoint" in capsys.readouterr().err
