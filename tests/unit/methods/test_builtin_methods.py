"""The built-in methods' settings and errors, the trainable predicate by part, frozen dtype, and the CLI faces:
`vict methods` and `vict inspect tiny --method NAME`."""

from __future__ import annotations

import json

import pytest
import torch

from vict.cli import main
from vict.methods.llama_adapter import supported_model_types
from vict.methods.lora import LoraSettings
from vict.models.builders import build_tiny
from vict.registry import MethodSpec, get_method, method_names
from vict.settings import SettingsError


def test_settings_validation_lists_every_problem() -> None:
    with pytest.raises(SettingsError) as err:
        LoraSettings(r=0, dropout=1.5, target_modules=[])
    message = str(err.value)
    assert "method.r=0" in message and "method.dropout=1.5" in message and "target_modules is empty" in message
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) 'alpah' \(did you mean 'alpha'\?\)"):
        MethodSpec.from_dict({"type": "lora", "alpah": 4})
    with pytest.raises(SettingsError, match=r"method.type='prefix' is not a registered method"):
        MethodSpec.from_dict({"type": "prefix"})
    assert MethodSpec.from_dict({"type": "lora", "r": 4}).to_dict() == {
        "type": "lora",
        "r": 4,
        "alpha": 16,
        "dropout": 0.05,
        "target_modules": ["q_proj", "v_proj"],
    }


def test_llama_adapter_on_an_unsupported_architecture_names_the_supported_ones() -> None:
    assert {"llama", "mistral"} <= set(supported_model_types())
    with pytest.raises(ValueError, match=r"model_type='opt'.*supports only \[.*'llama'.*\].*method\.type='lora'"):
        build_tiny("llama_adapter", llm_arch="opt")


def test_lora_targets_that_match_nothing_are_named() -> None:
    spec = {"type": "lora", "r": 2, "target_modules": ["q_proj", "query_key_value"]}
    with pytest.raises(ValueError, match=r"\['query_key_value'\] match no linear layer.*'v_proj'"):
        build_tiny(spec)


def test_the_predicate_by_part() -> None:
    model = build_tiny("lora", seed=0)
    lora_a = "llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    assert model.is_trainable("vpg.extra_queries") and model.is_trainable("connector.projection.weight")
    assert model.is_trainable(lora_a) and model.part_of(lora_a) == "method"
    assert not model.is_trainable("vpg.query_tokens") and model.part_of("vpg.query_tokens") == "qformer"
    base = "llm.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    assert not model.is_trainable(base) and model.part_of(base) == "llm"
    assert not model.is_trainable("vpg.qformer.encoder.layer.0.attention.attention.query.weight")
    assert model.part_of("vpg.vision_model.post_layernorm.bias") == "vision"
    adapter = build_tiny("llama_adapter", seed=0)
    gate = "llm.base_model.model.model.layers.1.self_attn.adaption_gate"
    assert (
        gate in dict(adapter.named_parameters()) and adapter.is_trainable(gate) and adapter.part_of(gate) == "method"
    )
    # LoRA's dropout follows train mode (the method owns it); frozen dropout never does.
    model = build_tiny({"type": "lora", "r": 2, "dropout": 0.1}, seed=0)
    model.train()
    dropouts = {n: m.training for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert any(on for n, on in dropouts.items() if ".lora_dropout." in n)
    assert not any(on for n, on in dropouts.items() if ".lora_dropout." not in n)


def test_lora_works_on_other_llm_families() -> None:
    model = build_tiny("lora", llm_arch="opt")
    assert model.trainable_parameters_by_part()["parts"]["method"]["trainable"] > 0
    assert model.config.llm_model_type == "opt"


@pytest.mark.parametrize(
    "name",
    [
        "lora",
        "llama_adapter",
        pytest.param(
            {"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 2, "bias_tuning": True},
            id="llama_adapter-bias_tuning",
        ),
    ],
)
def test_frozen_dtype_keeps_trainable_parts_fp32(batch_factory, name) -> None:
    model = build_tiny(name, frozen_dtype="bfloat16")
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n in dtypes if model.is_trainable(n))
    assert dtypes["vpg.vision_model.embeddings.patch_embedding.weight"] == torch.bfloat16
    assert dtypes["vpg.query_tokens"] == torch.float32  # Q-Former stays fp32, as in transformers
    assert any(d == torch.bfloat16 for n, d in dtypes.items() if n.startswith("llm.") and not model.is_trainable(n))
    batch = batch_factory(model, ["what is it ?"], ["a star"])
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    left = batch_factory(model, ["what is it ?", "how many ?"], side="left")
    assert len(model.generate(**left, max_new_tokens=3)) == 2


def test_vict_methods_lists_every_registered_method(capsys) -> None:
    assert main(["methods", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == method_names()
    for info in infos:
        cls = get_method(info["name"])
        assert info["description"] == cls.description and info["trains"] == cls.trains and info["trains"]
        assert {"name", "description", "trains"} <= set(info)
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("lora", "llama_adapter", "none", "qformer_tokens"):
        assert name in out
    assert "trains: the LoRA A/B matrices" in out


@pytest.mark.parametrize(
    ("name", "method_params"),
    # LoRA r=4 on q_proj (32->32) and v_proj (32->16, 2 KV heads) of 2 layers; LLaMA-Adapter: 4 prompts x 32 in both
    # layers plus one gate per head... per layer (peft: a (1, n_heads, 1, 1) gate).
    [("lora", 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4)), ("llama_adapter", 2 * (4 * 32 + 1)), ("none", 0)],
)
def test_inspect_tiny_with_any_method(capsys, name: str, method_params: int) -> None:
    assert main(["inspect", "tiny", "--method", name, "--extra-queries", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    parts = info["parameters"]["parts"]
    assert parts["extra_queries"]["trainable"] == 2 * 32
    assert parts["connector"]["trainable"] == 32 * 32 + 32
    assert parts.get("method", {"trainable": 0})["trainable"] == method_params
    assert info["parameters"]["trainable"] == sum(p["trainable"] for p in parts.values())
    assert info["num_visual_tokens"] == 8 + 2 and info["config"]["method"]["type"] == name
    assert main(["inspect", "tiny", "--method", name]) == 0
    out = capsys.readouterr().out
    for text in (
        "extra_queries",
        "connector",
        "= total",
        "vision",
        "visual tokens per image: 12",
        f"method     {name}",
    ):
        assert text in out, text


def test_inspect_checkpoint_and_paper(capsys, tmp_path) -> None:
    build_tiny("none", num_extra_queries=1).save_pretrained(tmp_path / "ckpt")
    assert main(["inspect", str(tmp_path / "ckpt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        "method" not in info["parameters"]["parts"] and info["parameters"]["parts"]["extra_queries"]["trainable"] == 32
    )
    assert main(["inspect", "paper", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["parts"]["method"]["trainable"] == 4_194_304
    assert info["config"]["llm_source"] == "huggyllama/llama-7b" and info["num_visual_tokens"] == 64
    with pytest.raises(SystemExit, match="neither a builder"):
        main(["inspect", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match=r"'lorra' is not a registered method; did you mean 'lora'"):
        main(["inspect", "tiny", "--method", "lorra"])


def test_llama_adapter_v2_bias_tuning_starts_as_the_frozen_llm_and_trains_scales_biases_and_norms(
    batch_factory,
) -> None:
    """``bias_tuning``: a scale and bias on every linear layer of every block (also the blocks without prompts), a
    scale on every norm and on the final norm; at initialisation the logits are V1's, bit for bit; the new tensors
    are the method's, train, and are stored in vict_trainable.safetensors (peft's adapter file keeps its own)."""
    v1 = build_tiny({"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 1}, seed=0)
    v2 = build_tiny({"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 1, "bias_tuning": True}, seed=0)
    added = {n: p for n, p in v2.named_parameters() if ".v2_bias_scale." in n}
    linears = [n for n, m in v2.llm.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    assert len(linears) == 2 * 7  # q, k, v, o, gate, up, down in both blocks (only block 1 has prompts)
    assert sum(n.endswith(".bias") for n in added) == len(linears)
    assert sum(n.endswith("norm.v2_bias_scale.scale") for n in added) == 2 * 2 + 1  # two per block and the final
    config = v2.llm.get_base_model().config
    per_block = 2 * (config.hidden_size * 2 + config.num_key_value_heads * config.head_dim * 2)  # q, o; k, v
    per_block += 2 * (2 * config.intermediate_size) + 2 * config.hidden_size  # gate, up; down
    expected = 2 * per_block + 2 * 2 * config.hidden_size + config.hidden_size  # + the norms' scales
    assert sum(p.numel() for p in added.values()) == expected
    assert all(v2.is_trainable(n) and v2.part_of(n) == "method" and not v2.method.saves(n) for n in added)
    assert not any(".v2_bias_scale." in n for n, _ in v1.named_parameters())

    batch = batch_factory(v1, PROMPTS_V2, TARGETS_V2)
    with torch.no_grad():
        base = v1(**batch, logits_on_labelled_only=False).logits
        start = v2(**batch, logits_on_labelled_only=False).logits
    assert torch.equal(start, base)
    loss = v2(**batch).loss
    loss.backward()
    grads = [p.grad for p in added.values()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)  # every scale and bias learns


PROMPTS_V2 = ["what shape is left ?", "how many circles ?"]
TARGETS_V2 = ["a red circle", "three"]
