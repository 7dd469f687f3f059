"""VLoRA (``vlora`` with the ``vlora_generator`` connector): no visual tokens; starts as the frozen LLM; the low-rank
path equals the materialised weight; images steer the deltas and text-only rows get none; cached features, cached
decoding, batching and the save/load round trip change nothing; bad settings are named."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from vict.cli import main
from vict.connectors.base import HAS_IMAGE
from vict.connectors.vlora_generator import VLORA_A, VLoRAGeneratorSettings
from vict.methods.vlora import VLoRASettings, low_rank_delta
from vict.models.builders import build_tiny, tiny_sources
from vict.models.vision_llm import TRAINABLE_FILE, VisionLLM
from vict.settings import SettingsError

PROMPTS = ["what shape is left ?", "describe the image .", "how many circles ?"]
TARGETS = ["a red circle", "two blue squares next to a star", "three"]


def _vlora(**kw) -> VisionLLM:
    return build_tiny("vlora", num_extra_queries=kw.pop("num_extra_queries", 4), seed=0, **kw).eval()


def _with_text_only_row(batch: dict, row: int = 2) -> dict:
    """Row ``row`` becomes text only: the collator's blank image (all-zero pixels)."""
    batch["pixel_values"][row] = 0.0
    return batch


def _trained_like(model: VisionLLM, seed: int = 5, scale: float = 0.3) -> None:
    """Non-zero B matrices, as training leaves them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if model.method.owns(f"llm.{name}"):
                param.add_(torch.randn(param.shape, generator=gen) * scale)


def _bare_llm() -> torch.nn.Module:
    _, llm_dir = tiny_sources(seed=0)
    return AutoModelForCausalLM.from_pretrained(llm_dir).eval()


def _full_logits(model: VisionLLM, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch, logits_on_labelled_only=False).logits


def test_no_visual_token_enters_the_llm(batch_factory) -> None:
    model = _vlora()
    assert model.num_visual_tokens == 0 and model.config.connector.type == "vlora_generator"
    batch = batch_factory(model, PROMPTS, TARGETS)
    vision = model.encode_images(batch["pixel_values"])
    assert vision.tokens.shape == (3, 0, 32)
    a = vision.extras[VLORA_A]
    # one A per image, adapted block (every=1: both) and weight type; k/v have 2 KV heads but read all 32 inputs
    assert {kind: tuple(t.shape) for kind, t in a.items()} == {kind: (3, 2, 32, 4) for kind in "qkvom"}
    lengths = []
    q_proj = model.base_llm.model.layers[0].self_attn.q_proj
    handle = q_proj.register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
    try:
        logits = _full_logits(model, batch)
    finally:
        handle.remove()
    assert lengths == [batch["input_ids"].shape[1]] and logits.shape[:2] == batch["input_ids"].shape


def test_a_fresh_model_is_the_frozen_llm_for_image_and_text_only_rows(batch_factory) -> None:
    model = _vlora()
    assert all(torch.count_nonzero(p) == 0 for n, p in model.llm.named_parameters() if ".vlora." in f".{n}.")
    batch = _with_text_only_row(batch_factory(model, PROMPTS, TARGETS))
    got = _full_logits(model, batch)
    with torch.no_grad():
        expected = _bare_llm()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with model.method.delta_disabled(model.llm):
            off = _full_logits(model, batch)
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(got[keep], expected[keep], rtol=0, atol=0)
    torch.testing.assert_close(got, off, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["q", "k", "o", "m"])
def test_the_low_rank_path_equals_the_materialised_weight(kind: str) -> None:
    model = _vlora()
    block = model.base_llm.model.layers[1]
    delta = block.vlora
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        b = delta.B[kind]
        b.copy_(torch.randn(b.shape, generator=gen))
    d_in, rank, scale = 32, 4, model.method.settings.scale
    a = torch.randn(2, 2, d_in, rank, generator=gen)  # (rows, adapted blocks, d_in, r)
    x = torch.randn(2, 5, d_in, generator=gen)
    module = block.mlp if kind == "m" else block.self_attn.get_submodule(f"{kind}_proj")
    with torch.no_grad():
        plain = module(x)
        with model.method.bound({kind: a}, torch.tensor([True, True])):
            got = module(x)
    assert got.shape[-1] == (16 if kind == "k" else 32)  # k_proj: 2 KV heads x 8
    for row in range(2):
        ab = scale * b @ a[row, 1].t()  # (d_out, d_in): the delta of block 1 for this row's image
        if kind == "m":
            want = plain[row] + F.linear(x[row], ab)
        else:
            want = F.linear(x[row], module.weight + ab, module.bias)
        torch.testing.assert_close(got[row], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(low_rank_delta(x, a[:, 1], b, scale), got - plain, rtol=1e-5, atol=1e-5)


def test_after_training_images_steer_the_deltas_and_text_only_rows_get_none(batch_factory) -> None:
    model = _vlora()
    batch = _with_text_only_row(batch_factory(model, PROMPTS, TARGETS))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(4):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert all(torch.count_nonzero(p) > 0 for n, p in model.llm.named_parameters() if ".vlora." in f".{n}.")
    pixels = batch["pixel_values"]
    with torch.no_grad():
        vision = model.encode_images(pixels)
    assert vision.extras[HAS_IMAGE].tolist() == [True, True, False]
    # text-only row: the bare LLM's logits, bit for bit, though B is trained
    got = _full_logits(model, batch)
    with torch.no_grad():
        bare = _bare_llm()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    keep = batch["attention_mask"][2].bool()
    torch.testing.assert_close(got[2, keep], bare[2, keep], rtol=0, atol=0)
    with model.method.delta_disabled(model.llm):
        off = _full_logits(model, batch)
    assert (got[:2] - off[:2]).abs().max() > 1e-3  # image rows: a delta
    # one text, three images: two different images give different deltas, the same image the same one
    one_text = {k: v[:1].repeat(3, *([1] * (v.dim() - 1))) for k, v in batch.items() if k != "pixel_values"}
    one_text["pixel_values"] = torch.stack([pixels[0], pixels[1], pixels[0]])
    with model.method.delta_disabled(model.llm):
        plain = _full_logits(model, one_text)
    delta = _full_logits(model, one_text) - plain  # each row's delta, seen in the logits
    a = model.encode_images(one_text["pixel_values"]).extras[VLORA_A]["q"].detach()
    assert not torch.allclose(a[0], a[1]) and torch.equal(a[0], a[2])
    # (the tiny random VPG's query outputs differ by ~6% between two noise images; the deltas by ~0.6%)
    assert (delta[0] - delta[1]).norm() > 1e-3 * delta[0].norm() > 0
    torch.testing.assert_close(delta[0], delta[2])


def test_cached_features_keep_the_loss_and_the_text_only_rows(batch_factory) -> None:
    for extra, training_level in ((4, "vision"), (0, "queries")):
        model = _vlora(num_extra_queries=extra)
        _trained_like(model)
        batch = _with_text_only_row(batch_factory(model, PROMPTS, TARGETS))
        text = {k: v for k, v in batch.items() if k != "pixel_values"}
        with torch.no_grad():
            expected = model(**batch).loss
            for training, level in ((True, training_level), (False, "queries")):
                features = model.vision_features(batch["pixel_values"], training=training)
                assert features.level == level
                assert torch.count_nonzero(features.value[2]) == 0  # the blank stays marked at every level
                assert model.encode_images(features=features).extras[HAS_IMAGE].tolist() == [True, True, False]
                torch.testing.assert_close(model(**text, features=features).loss, expected, rtol=1e-6, atol=1e-6)


def test_cached_greedy_decoding_equals_full_recomputation_and_batching(batch_factory, decoding) -> None:
    model = _vlora()
    _trained_like(model)
    batch = _with_text_only_row(batch_factory(model, PROMPTS, side="left"))
    assert (batch["attention_mask"] == 0).any(), "the test needs real left padding"
    decoding.assert_cached_equals_recomputed(model, batch, steps=6)
    assert model.generate(**batch, max_new_tokens=6) == decoding.generate_one_by_one(model, batch)


def test_rows_expanded_by_generate_reuse_their_image_deltas(batch_factory) -> None:
    model = _vlora()
    _trained_like(model)
    batch = batch_factory(model, PROMPTS[:2], side="left")
    with torch.no_grad():
        vision = model.encode_images(batch["pixel_values"])
        llm = model.base_llm
        with model.method.bind(vision):
            two = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            four = llm(
                input_ids=batch["input_ids"].repeat_interleave(2, 0),
                attention_mask=batch["attention_mask"].repeat_interleave(2, 0),
            ).logits
        outside = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(four, two.repeat_interleave(2, 0))
    assert (two - outside).abs().max() > 1e-3  # outside bind: no delta
    beams = model.generate_ids(**batch, num_beams=2, max_new_tokens=3)
    assert beams.shape[0] == 2


def test_save_and_load_give_identical_logits(tmp_path, batch_factory) -> None:
    from safetensors import safe_open

    model = _vlora()
    _trained_like(model)
    batch = _with_text_only_row(batch_factory(model, PROMPTS, TARGETS))
    expected = _full_logits(model, batch)
    out = model.save_pretrained(tmp_path / "ckpt")
    with safe_open(str(out / TRAINABLE_FILE), "pt") as f:
        keys = set(f.keys())
    assert {f"llm.model.layers.{i}.vlora.B.{kind}" for i in range(2) for kind in "qkvom"} <= keys
    assert "connector.heads.q.weight" in keys and "connector.queries" in keys
    again = VisionLLM.from_pretrained(out)
    want = {"type": "vlora_generator", "source": "queries", "width": 32, "depth": 2, "heads": 4}
    assert again.config.connector.to_dict() == want
    torch.testing.assert_close(_full_logits(again, batch), expected, rtol=0, atol=0)


def test_bad_settings_are_named() -> None:
    with pytest.raises(SettingsError) as err:
        VLoRASettings(rank=0, alpha=0, every=0, weight_types=["q", "x"])
    text = str(err.value)
    assert len(err.value.problems) == 4
    for name in ("method.rank=0", "method.alpha=0", "method.every=0", "method.weight_types=['q', 'x']", "'x'"):
        assert name in text, name
    with pytest.raises(SettingsError, match=r"connector.heads=3: must divide connector.width=32"):
        VLoRAGeneratorSettings(width=32, heads=3)
    with pytest.raises(ValueError, match=r"method.every=3: the LLM has only 2 blocks.*use 1..2"):
        build_tiny({"type": "vlora", "rank": 4, "every": 3}, seed=0, connector="vlora_generator")
    with pytest.raises(ValueError, match=r"connector.type='vlora_generator'.*got connector.type='qformer_tokens'"):
        build_tiny("vlora", seed=0, connector="qformer_tokens")
    model = build_tiny("none", seed=0, connector="vlora_generator")  # a generator nobody sized
    with pytest.raises(RuntimeError, match=r"build the model with method.type: vlora"):
        model.encode_images(torch.zeros(1, 3, 30, 30))


def test_inspect_counts_the_tiny_model_and_the_paper_model(capsys) -> None:
    assert main(["inspect", "tiny", "--method", "vlora", "--extra-queries", "2", "--json"]) == 0
    parts = json.loads(capsys.readouterr().out)["parameters"]["parts"]
    # B per adapted block (both): q 32 x 4, k and v 16 x 4 (2 KV heads), o and m 32 x 4
    assert parts["method"]["trainable"] == 2 * (3 * 32 * 4 + 2 * 16 * 4)
    assert main(["inspect", "paper", "--method", "vlora", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_visual_tokens"] == 0 and info["config"]["connector"]["type"] == "vlora_generator"
    assert info["parameters"]["parts"]["method"]["trainable"] == 8 * 5 * 4096 * 64


def test_the_inference_layer_gives_text_only_prompts_no_delta() -> None:
    from PIL import Image

    from vict.inference import VictEngine

    model = _vlora()
    _trained_like(model)
    images = [Image.new("RGB", (30, 30), (255, 0, 0)), None, Image.new("RGB", (30, 30), (0, 0, 255))]
    prompts = ["<image> what color is it ?", "what color is it ?", "<image> what color is it ?"]
    cached = VictEngine(model, max_new_tokens=4).generate(images, prompts, max_new_tokens=4)
    plain = VictEngine(model, max_new_tokens=4, reuse_features=False).generate(images, prompts, max_new_tokens=4)
    assert cached == plain
    with model.method.delta_disabled(model.llm):
        off = VictEngine(model, max_new_tokens=4).generate(images[1:2], prompts[1:2], max_new_tokens=4)
    assert cached[1] == off[0]  # the text-only prompt answers as the frozen LLM


def test_the_generator_can_read_the_vision_towers_patches(batch_factory, tmp_path) -> None:
    """``source: patches``: the generator reads the tower's [CLS] + patch tokens (no Q-Former): they are what it
    caches, the loss from them equals the loss from pixels, other images give other A matrices, and extra queries
    (which would never train) are refused by name."""
    connector = {"type": "vlora_generator", "source": "patches", "width": 32, "depth": 2, "heads": 4}
    model = build_tiny("vlora", num_extra_queries=0, seed=0, connector=connector).eval()
    vision = model.vpg.vision_model.config
    assert model.connector.pos_embed.shape[0] == (vision.image_size // vision.patch_size) ** 2 + 1
    assert model.connector.input_level(model.vpg) == "vision"
    _trained_like(model)
    batch = batch_factory(model, PROMPTS[:2], TARGETS[:2])
    with torch.no_grad():
        features = model.vision_features(batch["pixel_values"], training=True)
        assert features.level == "vision"
        a = model(**batch).loss
        b = model(**{k: v for k, v in batch.items() if k != "pixel_values"}, features=features).loss
        torch.testing.assert_close(a, b)
        deltas = model.encode_images(pixel_values=batch["pixel_values"]).extras[VLORA_A]["q"]
    assert not torch.allclose(deltas[0], deltas[1])
    model.save_pretrained(tmp_path / "ckpt")
    again = VisionLLM.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"model\.num_extra_queries: 0"):
        build_tiny("vlora", num_extra_queries=4, seed=0, connector=connector)
    with pytest.raises(SettingsError, match=r"connector\.source='tokens'"):
        VLoRAGeneratorSettings(source="tokens")
