"""The micro zoo end to end: it trains, saves hub-style directories, loads with transformers' own classes and
with vict's VPG, is cached by config hash, and is bit-identical for the same seed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    LlamaForCausalLM,
    OPTForCausalLM,
)

from vict.zoo import ZooPaths, build_zoo, get_preset
from vict.zoo.training import quiet


@pytest.fixture(scope="module")
def micro_zoo(tmp_path_factory: pytest.TempPathFactory) -> ZooPaths:
    return build_zoo(tmp_path_factory.mktemp("zoo_out"), "micro", seed=0, progress=quiet)


def test_layout_and_manifest(micro_zoo: ZooPaths) -> None:
    assert not micro_zoo.reused
    assert micro_zoo.root.name == micro_zoo.key
    for d in (micro_zoo.blip2_dir, micro_zoo.source_lm_dir, micro_zoo.target_lm_dir):
        assert (d / "config.json").is_file() and (d / "model.safetensors").is_file(), d
    manifest = micro_zoo.manifest()
    assert manifest["key"] == micro_zoo.key
    assert manifest["config"] == get_preset("micro").to_dict()
    assert manifest["source_lm"]["architecture"] == "OPTForCausalLM"
    assert manifest["target_lm"]["architecture"] == "LlamaForCausalLM"
    micro = get_preset("micro")
    assert manifest["stream"]["vision_images"] == micro.blip2.vision_steps * micro.blip2.vision_batch_size
    assert manifest["stream"]["text_documents"] == micro.text_scenes
    assert len(set(manifest["stream"]["seeds"].values())) == 6  # every stage draws its own images
    trains = {k: manifest[k]["train"] for k in manifest["first_losses"] if k != "blip2_reading"}
    trains["blip2_reading"] = manifest["blip2"]["reading_train"]  # micro runs the optional reading stage
    assert (
        set(trains) == set(manifest["first_losses"]) and trains["blip2_reading"]["steps"] == micro.blip2.reading_steps
    )
    assert all(len(v) == min(20, trains[k]["steps"]) for k, v in manifest["first_losses"].items())
    assert set(manifest["blip2"]["quality_val"]) == {"untrained", "after_generative_stage", "trained"}
    # no temporary build folder is left behind
    assert [p.name for p in micro_zoo.root.parent.iterdir()] == [micro_zoo.key]


def test_training_lowered_the_losses(micro_zoo: ZooPaths) -> None:
    m = micro_zoo.manifest()
    for lm in ("source_lm", "target_lm"):
        assert m[lm]["val_loss_after"] < m[lm]["val_loss_before"] - 0.5, (lm, m[lm])
        assert m[lm]["train"]["last_loss"] < m[lm]["train"]["first_loss"], (lm, m[lm]["train"])
    for stage, steps in (
        ("blip2", get_preset("micro").blip2.steps),
        ("vision", get_preset("micro").blip2.vision_steps),
    ):
        b = m[stage]["train"]
        assert b["steps"] == steps
        assert b["last_loss"] < b["first_loss"], (stage, b)


def test_tokenizers_differ(micro_zoo: ZooPaths) -> None:
    source = AutoTokenizer.from_pretrained(micro_zoo.source_lm_dir)
    target = AutoTokenizer.from_pretrained(micro_zoo.target_lm_dir)
    text = "What colour is the large circle on the left?"
    assert source(text)["input_ids"] != target(text)["input_ids"]
    assert source.get_vocab() != target.get_vocab()
    # word-level source: one token per word; byte-level BPE target: unseen words still encode without <unk>
    assert len(source("large circle", add_special_tokens=False)["input_ids"]) == 2
    assert source.decode(source(text)["input_ids"], skip_special_tokens=True) == text.lower()
    assert target.unk_token_id not in target("zebra!", add_special_tokens=False)["input_ids"]
    assert "<image>" in source.get_vocab() and "<image>" not in target.get_vocab()


def test_language_models_load_as_plain_causal_lms(micro_zoo: ZooPaths) -> None:
    source = AutoModelForCausalLM.from_pretrained(micro_zoo.source_lm_dir)
    target = AutoModelForCausalLM.from_pretrained(micro_zoo.target_lm_dir)
    assert isinstance(source, OPTForCausalLM) and isinstance(target, LlamaForCausalLM)
    tok = AutoTokenizer.from_pretrained(micro_zoo.target_lm_dir)
    prompt = tok(["a small"], return_tensors="pt")
    out = target.generate(**prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 3)


def test_blip2_loads_and_generates_with_transformers(micro_zoo: ZooPaths, micro_world: Path) -> None:
    model = Blip2ForConditionalGeneration.from_pretrained(micro_zoo.blip2_dir)
    processor = Blip2Processor.from_pretrained(micro_zoo.blip2_dir)
    spec = get_preset("micro").blip2
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert model.config.image_token_index == image_token
    assert model.config.num_query_tokens == processor.num_query_tokens == spec.num_query_tokens
    # the LM inside the BLIP-2 is the source LM, unchanged by captioning (it was frozen)
    source = OPTForCausalLM.from_pretrained(micro_zoo.source_lm_dir)
    torch.testing.assert_close(
        model.language_model.get_input_embeddings().weight, source.get_input_embeddings().weight
    )

    images = [Image.open(micro_world / "images" / "1.png"), Image.open(micro_world / "images" / "2.png")]
    inputs = processor(images=images, text=["a", "a"], return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, spec.image_size, spec.image_size)
    prompt_len = inputs["input_ids"].shape[1]
    assert prompt_len == spec.num_query_tokens + 2  # <image> x q, <s>, "a"
    assert (inputs["input_ids"][:, : spec.num_query_tokens] == image_token).all()
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and prompt_len < out.shape[1] <= prompt_len + 5
    # no prompt at all: transformers builds [<image>] * q + <s> itself
    captions = processor.batch_decode(model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=5))
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_vict_vpg_loads_the_zoo_blip2(micro_zoo: ZooPaths, micro_world: Path) -> None:
    from vict.models.vpg import VisualPromptGenerator

    spec = get_preset("micro").blip2
    with_extra = VisualPromptGenerator.from_pretrained(micro_zoo.blip2_dir, num_extra_queries=2)
    assert with_extra.num_queries == spec.num_query_tokens + 2 and with_extra.hidden_size == spec.qformer_hidden
    vpg = VisualPromptGenerator.from_pretrained(micro_zoo.blip2_dir).eval()
    assert vpg.image_size == spec.image_size
    # the VPG's image processor is the zoo's (read from preprocessor_config.json, not defaulted)
    assert list(vpg.image_processor.image_mean) == list(
        Blip2Processor.from_pretrained(micro_zoo.blip2_dir).image_processor.image_mean
    )
    pixel_values = vpg.preprocess([Image.open(micro_world / "images" / "3.png")])
    blip2 = Blip2ForConditionalGeneration.from_pretrained(micro_zoo.blip2_dir).eval()
    with torch.no_grad():
        ours = vpg(pixel_values)
        image_embeds = blip2.vision_model(pixel_values).last_hidden_state
        theirs = blip2.qformer(
            query_embeds=blip2.query_tokens, encoder_hidden_states=image_embeds, return_dict=True
        ).last_hidden_state
    torch.testing.assert_close(ours, theirs)


def test_cache_reused_then_rebuilt_when_config_changes(micro_zoo: ZooPaths) -> None:
    out = micro_zoo.root.parent
    weights = micro_zoo.blip2_dir / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    again = build_zoo(out, "micro", seed=0, progress=quiet)
    assert again.reused and again.root == micro_zoo.root
    assert weights.stat().st_mtime_ns == mtime

    micro = get_preset("micro")
    changed = dataclasses.replace(micro, blip2=dataclasses.replace(micro.blip2, steps=micro.blip2.steps - 10))
    rebuilt = build_zoo(out, changed, seed=0, progress=quiet)
    assert not rebuilt.reused and rebuilt.key != micro_zoo.key
    assert rebuilt.manifest()["blip2"]["train"]["steps"] == micro.blip2.steps - 10
    # the earlier build is kept, so switching back costs nothing
    assert build_zoo(out, "micro", seed=0, progress=quiet).reused


def test_same_seed_same_weights_other_seed_other_weights(micro_zoo: ZooPaths, tmp_path: Path) -> None:
    twin = build_zoo(tmp_path / "a", "micro", seed=0, progress=quiet)
    assert twin.key == micro_zoo.key and not twin.reused
    for sub in ("blip2", "source_lm", "target_lm"):
        ours = load_file(micro_zoo.root / sub / "model.safetensors")
        theirs = load_file(twin.root / sub / "model.safetensors")
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), f"{sub}/{k} differs between two builds with seed 0"
    other = build_zoo(tmp_path / "b", "micro", seed=1, progress=quiet)
    assert other.key != micro_zoo.key
    a = load_file(micro_zoo.blip2_dir / "model.safetensors")["query_tokens"]
    b = load_file(other.blip2_dir / "model.safetensors")["query_tokens"]
    assert not torch.equal(a, b)


def test_a_build_prefix_reproduces_the_first_losses(micro_zoo: ZooPaths, tmp_path: Path) -> None:
    prefix = build_zoo(tmp_path, "micro", seed=0, progress=quiet, max_steps=5, reference=micro_zoo)
    assert prefix.root.name == f"{micro_zoo.key}-prefix5"
    full, short = micro_zoo.manifest()["first_losses"], prefix.manifest()["first_losses"]
    for stage, losses in short.items():
        assert len(losses) == 5, stage
        if stage not in ("blip2", "blip2_reading"):  # they start from the stage-1 Q-Former, which no build keeps
            assert losses == full[stage][:5], stage  # bit-identical floats
