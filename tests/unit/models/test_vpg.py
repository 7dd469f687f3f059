"""The visual prompt generator: parity with transformers' BLIP-2, LAVIS loading, selective reads, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import Blip2ForConditionalGeneration

from vict.models.builders import tiny_blip2_config, tiny_sources, write_tiny_blip2
from vict.models.vpg import VisualPromptGenerator


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return write_tiny_blip2(tmp_path_factory.mktemp("blip") / "tiny-blip2", seed=3)


@pytest.fixture(scope="module")
def reference(blip_dir):
    return Blip2ForConditionalGeneration.from_pretrained(blip_dir).eval()


def pixels(b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, 30, 30, generator=torch.Generator().manual_seed(seed))


def reference_queries(ref, x: torch.Tensor) -> torch.Tensor:
    """What transformers' BLIP-2 computes before its language projection: vision model, then Q-Former."""
    image_embeds = ref.vision_model(pixel_values=x).last_hidden_state
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    query = ref.query_tokens.expand(x.shape[0], -1, -1)
    return ref.qformer(query_embeds=query, encoder_hidden_states=image_embeds, encoder_attention_mask=mask)[0]


def test_parity_with_transformers_blip2(blip_dir, reference) -> None:
    vpg = VisualPromptGenerator.from_pretrained(blip_dir, num_extra_queries=0)
    x = pixels()
    with torch.no_grad():
        ours, theirs = vpg(x), reference_queries(reference, x)
    assert ours.shape == (2, 8, 32)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # Not a constant function: two images give different query outputs.
    assert (ours[0] - ours[1]).abs().max() > 1e-2


def test_extra_queries_extend_without_changing_the_originals(blip_dir, reference) -> None:
    vpg = VisualPromptGenerator.from_pretrained(blip_dir, num_extra_queries=5, seed=1)
    assert vpg.num_queries == 13 and vpg.num_extra_queries == 5
    assert [n for n, p in vpg.named_parameters() if p.requires_grad] == ["extra_queries"]
    orig = vpg.query_tokens
    torch.testing.assert_close(vpg.extra_queries.std(), orig.std(), rtol=0.5, atol=0)
    again = VisualPromptGenerator.from_pretrained(blip_dir, num_extra_queries=5, seed=1)
    assert torch.equal(again.extra_queries, vpg.extra_queries)
    other = VisualPromptGenerator.from_pretrained(blip_dir, num_extra_queries=5, seed=2)
    assert not torch.equal(other.extra_queries, vpg.extra_queries)
    with torch.no_grad():
        out = vpg(pixels())
    assert out.shape == (2, 13, 32)


def test_encode_vision_then_query_equals_forward(blip_dir) -> None:
    vpg = VisualPromptGenerator.from_pretrained(blip_dir, num_extra_queries=2)
    x = pixels()
    with torch.no_grad():
        embeds = vpg.encode_vision(x)
        assert embeds.shape == (2, 15 * 15 + 1, 32)
        assert torch.equal(vpg.query(embeds), vpg(x))


def test_lavis_state_dict_loads_to_identical_outputs(tmp_path, blip_dir, reference, to_lavis) -> None:
    path = tmp_path / "blip2_pretrained_opt_tiny.pth"
    torch.save({"model": to_lavis(reference)}, path)
    hf_eps = reference.config.vision_config.layer_norm_eps
    vpg = VisualPromptGenerator.from_lavis(path, config=tiny_blip2_config(), ln_vision_eps=hf_eps)
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(vpg(x), reference_queries(reference, x), rtol=0, atol=1e-6)
    assert vpg.spec.format == "lavis"
    # Sizes can also be inferred from the tensors when the widths are those of a released model; for the tiny
    # widths the error names the fix.
    with pytest.raises(ValueError, match="pass config="):
        VisualPromptGenerator.from_lavis(path)


def test_lavis_missing_and_unexpected_keys_are_listed(tmp_path, reference, to_lavis) -> None:
    state = to_lavis(reference)
    no_vit = {k: v for k, v in state.items() if not k.startswith("visual_encoder.")}
    path = tmp_path / "stage2.pth"
    torch.save({"model": no_vit}, path)
    with pytest.raises(ValueError, match=r"missing VPG tensors: visual_encoder\.cls_token.*vision_path=eva_vit_g"):
        VisualPromptGenerator.from_lavis(path, config=tiny_blip2_config())
    # The ViT can come from a separate EVA state dict (keys without the visual_encoder. prefix).
    eva = {k[len("visual_encoder.") :]: v for k, v in state.items() if k.startswith("visual_encoder.")}
    torch.save(eva, tmp_path / "eva.pth")
    vpg = VisualPromptGenerator.from_lavis(path, config=tiny_blip2_config(), vision_path=tmp_path / "eva.pth")
    assert vpg.num_queries == 8
    strange = {**state, "Qformer.bert.pooler.dense.weight": torch.zeros(2), "mystery": torch.zeros(1)}
    torch.save(strange, tmp_path / "strange.pth")
    with pytest.raises(ValueError, match=r"unexpected keys .*'Qformer.bert.pooler.dense.weight', 'mystery'"):
        VisualPromptGenerator.from_lavis(tmp_path / "strange.pth", config=tiny_blip2_config())


def test_sharded_checkpoint_reads_only_vpg_shards(tmp_path, reference) -> None:
    out = tmp_path / "sharded"
    reference.save_pretrained(out, max_shard_size="20KB")
    shutil.copy(
        tiny_sources()[0] / "preprocessor_config.json",
        out / "preprocessor_config.json",
    )
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    lm_only = {s for s in index.values()} - {s for k, s in index.items() if not k.startswith("language_")}
    assert lm_only, "the test needs at least one shard holding only language-model tensors"
    for shard in lm_only:  # corrupt them: a loader that opened them would fail
        (out / shard).write_bytes(b"not a safetensors file")
    vpg = VisualPromptGenerator.from_pretrained(out)
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(vpg(x), reference_queries(reference, x), rtol=0, atol=1e-6)


def test_not_a_blip2_checkpoint(tmp_path, reference, to_lavis) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"not a BLIP-2 checkpoint.*model_type='llama'.*expected 'blip-2'"):
        VisualPromptGenerator.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json: missing"):
        VisualPromptGenerator.from_pretrained(tmp_path / "..")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        VisualPromptGenerator.from_pretrained(tmp_path / "not_there")
    no_q = {k: v for k, v in to_lavis(reference).items() if "crossattention.self.key" not in k}
    torch.save(no_q, tmp_path / "no_q.pth")
    with pytest.raises(ValueError, match=r"Qformer\.bert\.encoder\.layer\.0\.crossattention\.self\.key\.bias"):
        VisualPromptGenerator.from_lavis(tmp_path / "no_q.pth", config=tiny_blip2_config())


def test_wrong_pixel_size_names_expected_and_fix(blip_dir) -> None:
    vpg = VisualPromptGenerator.from_pretrained(blip_dir)
    with pytest.raises(ValueError, match=r"\(batch, 3, 30, 30\), got \(1, 3, 32, 32\).*image processor"):
        vpg(torch.zeros(1, 3, 32, 32))


def test_preprocess_matches_checkpoint_processor(blip_dir) -> None:
    from PIL import Image

    vpg = VisualPromptGenerator.from_pretrained(blip_dir)
    image = Image.new("RGB", (64, 40), color=(255, 0, 0))
    px = vpg.preprocess([image])
    assert px.shape == (1, 3, 30, 30)
    # Red channel: (1 - mean) / std with OpenAI CLIP statistics.
    torch.testing.assert_close(px[0, 0, 0, 0].item(), (1 - 0.48145466) / 0.26862954, rtol=1e-4, atol=1e-4)


def test_frozen_modules_stay_in_eval_mode(blip_dir) -> None:
    vpg = VisualPromptGenerator.from_pretrained(blip_dir, num_extra_queries=2)
    vpg.train()
    assert vpg.training and not vpg.qformer.training and not vpg.vision_model.training
    assert not any(m.training for m in vpg.qformer.modules())


def test_hub_source_downloads_only_config_processor_index_and_vpg_shards(tmp_path, reference, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    repo = tmp_path / "hub_repo"
    reference.save_pretrained(repo, max_shard_size="20KB")
    shutil.copy(tiny_sources()[0] / "preprocessor_config.json", repo / "preprocessor_config.json")
    index = json.loads((repo / "model.safetensors.index.json").read_text())["weight_map"]
    vpg_shards = {s for k, s in index.items() if not k.startswith(("language_model.", "language_projection."))}
    requested: list[str] = []

    def fake_download(repo_id: str, filename: str, **_: object) -> str:
        assert repo_id == "Salesforce/tiny-blip2"
        requested.append(filename)
        if not (repo / filename).is_file():
            raise EntryNotFoundError(f"{filename} not in repo")
        return str(repo / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    vpg = VisualPromptGenerator.from_pretrained("Salesforce/tiny-blip2")
    assert set(requested) == {"config.json", "preprocessor_config.json", "model.safetensors.index.json"} | vpg_shards
    assert len(vpg_shards) < len(set(index.values())), "some shards hold only the language model"
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(vpg(x), reference_queries(reference, x), rtol=0, atol=1e-6)
    assert vpg.spec.source == "Salesforce/tiny-blip2" and vpg.spec.format == "hf"


def test_old_and_wrapped_key_layouts_load_identically(tmp_path, blip_dir, reference) -> None:
    """Early HF conversions stored ``self_attn.q_bias``/``v_bias``; wrapped layouts prefix ``model.``."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(blip_dir / "model.safetensors"))
    rewritten = {}
    for key, value in state.items():
        if key.endswith("self_attn.qkv.bias"):
            q, _, v = value.chunk(3)
            rewritten["model." + key.replace("qkv.bias", "q_bias")] = q.clone()
            rewritten["model." + key.replace("qkv.bias", "v_bias")] = v.clone()
        else:
            rewritten["model." + key] = value
    out = tmp_path / "old_layout"
    out.mkdir()
    save_file(rewritten, str(out / "model.safetensors"))
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(blip_dir / name, out / name)
    vpg = VisualPromptGenerator.from_pretrained(out)
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(vpg(x), reference_queries(reference, x), rtol=0, atol=1e-6)


def test_lavis_config_inference_recovers_the_released_vit_g_sizes() -> None:
    from vict.models.builders import paper_blip2_config
    from vict.models.lavis import infer_blip2_config

    config = paper_blip2_config()
    with torch.device("meta"):
        vpg = VisualPromptGenerator.from_config(config)
    inferred = infer_blip2_config(dict(vpg.state_dict()), "blip2_pretrained_opt2.7b.pth")
    for sub, fields in {
        "vision_config": (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "image_size",
            "patch_size",
        ),
        "qformer_config": (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "cross_attention_frequency",
        ),
    }.items():
        for name in fields:
            assert getattr(getattr(inferred, sub), name) == getattr(getattr(config, sub), name), f"{sub}.{name}"
    assert inferred.num_query_tokens == 32
    assert (inferred.vision_config.num_hidden_layers, inferred.vision_config.image_size) == (39, 224)


def test_hub_source_offline_and_uncached_is_a_clear_error(monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id: str, filename: str, **_: object) -> str:
        raise LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(FileNotFoundError, match=r"Salesforce/blip2-opt-2\.7b: config\.json is not in the local"):
        VisualPromptGenerator.from_pretrained("Salesforce/blip2-opt-2.7b")
