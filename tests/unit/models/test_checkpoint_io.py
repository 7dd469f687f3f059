"""Saving and loading: peft-format adapter, recorded settings, atomic writes, named errors, paper size, older
checkpoints (the exact round trip and file list of every method are in tests/unit/methods/test_method_matrix.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from vict.checkpoint import atomic_directory, load_tensors
from vict.models.builders import build_tiny, paper_footprint
from vict.models.vision_llm import VisionLLM, VisionLLMConfig

PROMPTS = ["what shape is left ?", "describe the image ."]
TARGETS = ["a red circle", "two blue squares"]


def perturb_trainable(model, seed: int = 0) -> None:
    """Move every trainable tensor away from its init, as training would (LoRA B / gates start at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)


def test_saved_adapter_loads_with_peft_on_the_bare_llm(tmp_path) -> None:
    model = build_tiny("lora", seed=0)
    perturb_trainable(model)
    out = model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    bare = AutoModelForCausalLM.from_pretrained(config["llm_source"])
    peft_model = PeftModel.from_pretrained(bare, str(out / "adapter"))
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        ours = model.llm(input_ids=ids).logits
        theirs = peft_model(input_ids=ids).logits
    assert torch.equal(ours, theirs)
    # ... and the delta is really in there: the bare LLM without the adapter computes something else.
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(config["llm_source"])(input_ids=ids).logits
    assert (plain - ours).abs().max() > 1e-3


def test_config_records_sources_and_settings(tmp_path) -> None:
    model = build_tiny("llama_adapter", num_extra_queries=3, seed=0)
    out = model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    assert config["vpg_format"] == "hf" and Path(config["vpg_source"], "config.json").is_file()
    assert config["num_extra_queries"] == 3 and model.num_visual_tokens == 11
    assert config["method"] == {"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 2, "bias_tuning": False}
    assert config["connector"] == {"type": "qformer_tokens", "init_weights": None}
    assert config["frozen_dtype"] == "float32" and config["llm_model_type"] == "llama" and config["format"] == 2


def test_atomic_directory_keeps_the_old_checkpoint_on_failure(tmp_path) -> None:
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new, half written")
        raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "temporary folders must be cleaned up"
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("replaced")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_missing_or_mismatched_checkpoint_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        VisionLLM.from_pretrained(tmp_path / "nowhere")
    model = build_tiny("lora", num_extra_queries=2, seed=0)
    out = model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    config["num_extra_queries"] = 5
    (out / "config.json").write_text(json.dumps(config))
    (out / "MANIFEST.json").unlink()  # a config edited by hand: the manifest would name it; the shapes are tested here
    with pytest.raises(ValueError, match=r"vpg\.extra_queries has shape \(1, 2, 32\).*expects \(1, 5, 32\)"):
        VisionLLM.from_pretrained(out)


@pytest.mark.parametrize(
    ("method", "method_params"),
    # LoRA r=8 on q_proj and v_proj of 32 layers: 32 * 2 * (4096 * 8 + 8 * 4096).
    # LLaMA-Adapter: 10 prompts x 4096 in the top 2 layers, plus one gate per layer.
    [("lora", 32 * 2 * 2 * 4096 * 8), ("llama_adapter", 2 * 10 * 4096 + 2)],
)
def test_paper_checkpoint_is_megabytes(method: str, method_params: int) -> None:
    info = paper_footprint(method)
    counts, parts = info["counts"], info["counts"]["parts"]
    assert parts["extra_queries"]["trainable"] == 32 * 768
    assert parts["connector"]["trainable"] == 768 * 4096 + 4096
    assert parts["method"]["trainable"] == method_params
    assert parts["llm"] == {"trainable": 0, "frozen": 6_738_415_616}  # LLaMA-7B
    assert 900e6 < parts["vision"]["frozen"] < 1.1e9 and parts["vision"]["trainable"] == 0  # EVA ViT-g
    assert info["checkpoint_bytes"] == 4 * counts["trainable"]
    assert 1 * 2**20 < info["checkpoint_bytes"] < 40 * 2**20


def test_lavis_sourced_model_round_trips(tmp_path, batch_factory, to_lavis) -> None:
    from transformers import Blip2ForConditionalGeneration

    from vict.models.builders import tiny_blip2_config, tiny_sources
    from vict.models.vpg import VisualPromptGenerator

    blip_dir, llm_dir = tiny_sources()
    reference = Blip2ForConditionalGeneration.from_pretrained(blip_dir)
    torch.save({"model": to_lavis(reference)}, tmp_path / "tiny_lavis.pth")
    vpg = VisualPromptGenerator.from_lavis(
        tmp_path / "tiny_lavis.pth", num_extra_queries=2, config=tiny_blip2_config()
    )
    config = VisionLLMConfig(vpg_source="?", llm_source=str(llm_dir), num_extra_queries=2)
    model = VisionLLM.compose(
        vpg, AutoModelForCausalLM.from_pretrained(llm_dir), AutoTokenizer.from_pretrained(llm_dir), config
    )
    assert model.config.vpg_format == "lavis" and model.config.vpg_source.endswith("tiny_lavis.pth")
    perturb_trainable(model)
    batch = batch_factory(model, PROMPTS, TARGETS)
    out = model.save_pretrained(tmp_path / "ckpt")
    again = VisionLLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.equal(again(**batch).loss, model(**batch).loss)


def test_moved_sources_are_named_and_can_be_redirected(tmp_path, batch_factory) -> None:
    import shutil

    from vict.models.builders import tiny_sources

    model = build_tiny("lora", seed=0, cache_dir=tmp_path / "cache")
    perturb_trainable(model)
    out = model.save_pretrained(tmp_path / "ckpt")
    blip_dir, _ = tiny_sources(tmp_path / "cache", seed=0)
    moved = shutil.move(str(blip_dir), str(tmp_path / "moved_blip2"))
    with pytest.raises(FileNotFoundError, match=r"vpg_source .* does not exist.*vpg_source=NEW_PATH"):
        VisionLLM.from_pretrained(out)
    again = VisionLLM.from_pretrained(out, vpg_source=moved)
    batch = batch_factory(model, PROMPTS, TARGETS)
    with torch.no_grad():
        assert torch.equal(again(**batch).loss, model(**batch).loss)


def test_lora_on_lm_head_saves_only_the_lora_tensors(tmp_path, batch_factory) -> None:
    settings = {"type": "lora", "r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "lm_head"]}
    model = build_tiny(settings, seed=0)
    perturb_trainable(model)
    out = model.save_pretrained(tmp_path / "ckpt")
    adapter = load_tensors(out / "adapter" / "adapter_model.safetensors")
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter), sorted(adapter)
    assert (
        sum(v.numel() for v in adapter.values())
        == model.trainable_parameters_by_part()["parts"]["method"]["trainable"]
    )
    batch = batch_factory(model, PROMPTS, TARGETS)
    with torch.no_grad():
        assert torch.equal(VisionLLM.from_pretrained(out)(**batch).loss, model(**batch).loss)


def test_a_vict_0_1_checkpoint_still_loads(tmp_path, batch_factory) -> None:
    # vict 0.1.0 wrote config.json with a flat `peft` section (every PEFT setting, whatever the type),
    # projection_shape and num_visual_tokens, and the projection as `projection.*` in vict_trainable.safetensors.
    from safetensors.torch import save_file

    model = build_tiny("llama_adapter", num_extra_queries=2, seed=0)
    perturb_trainable(model)
    out = model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    config.pop("method"), config.pop("connector"), config.pop("format")
    config["peft"] = {"type": "llama_adapter", "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj"],
                      "adapter_len": 4, "adapter_layers": 2}  # fmt: skip
    config |= {"projection_shape": [32, 32], "num_visual_tokens": 10}
    (out / "config.json").write_text(json.dumps(config))
    (out / "MANIFEST.json").unlink()  # vict 0.1.0 wrote none
    tensors = load_tensors(out / "vict_trainable.safetensors")
    save_file({k.removeprefix("connector."): v for k, v in tensors.items()}, str(out / "vict_trainable.safetensors"))
    again = VisionLLM.from_pretrained(out)
    assert again.config.method.to_dict() == {
        "type": "llama_adapter",
        "adapter_len": 4,
        "adapter_layers": 2,
        "bias_tuning": False,
    }
    assert again.config.format == 2
    batch = batch_factory(model, PROMPTS, TARGETS)
    with torch.no_grad():
        assert torch.equal(again(**batch).loss, model(**batch).loss)
