"""PEFT settings and errors, the trainable predicate, frozen dtype, and `vict inspect`."""

from __future__ import annotations

import json

import pytest
import torch

from vict.cli import main
from vict.models.builders import build_tiny
from vict.peft import PeftSettings
from vict.peft.llama_adapter import supported_model_types
from vict.peft.trainable import is_trainable, part_of


def test_peft_settings_validation_lists_every_problem() -> None:
    with pytest.raises(ValueError) as err:
        PeftSettings(type="prefix", r=0, dropout=1.5)
    message = str(err.value)
    assert "peft.type='prefix'" in message and "peft.r=0" in message and "peft.dropout=1.5" in message
    with pytest.raises(ValueError, match=r"unknown PEFT setting\(s\) \['rank'\]"):
        PeftSettings.from_dict({"type": "lora", "rank": 4})


def test_llama_adapter_on_an_unsupported_architecture_names_the_supported_ones() -> None:
    assert {"llama", "mistral"} <= set(supported_model_types())
    with pytest.raises(ValueError, match=r"model_type='opt'.*supports only \[.*'llama'.*\].*peft\.type='lora'"):
        build_tiny(peft="llama_adapter", llm_arch="opt")


def test_lora_targets_that_match_nothing_are_named() -> None:
    settings = PeftSettings(type="lora", r=2, target_modules=["q_proj", "query_key_value"])
    with pytest.raises(ValueError, match=r"\['query_key_value'\] match no linear layer.*'v_proj'"):
        build_tiny(peft=settings)


def test_predicate_parts() -> None:
    assert is_trainable("vpg.extra_queries") and is_trainable("projection.weight")
    assert is_trainable("llm.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")
    assert is_trainable("llm.base_model.model.model.layers.1.self_attn.adaption_gate")
    assert not is_trainable("vpg.query_tokens")
    assert not is_trainable("llm.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight")
    assert not is_trainable("vpg.qformer.encoder.layer.0.attention.attention.query.weight")
    assert part_of("vpg.query_tokens") == "qformer" and part_of("vpg.vision_model.post_layernorm.bias") == "vision"


def test_lora_and_adapter_work_on_other_llm_families() -> None:
    model = build_tiny(peft="lora", llm_arch="opt")
    assert model.trainable_parameters_by_part()["peft"] > 0
    assert model.config.llm_model_type == "opt"


@pytest.mark.parametrize("peft", ["lora", "llama_adapter"])
def test_frozen_dtype_keeps_trainable_parts_fp32(batch_factory, peft: str) -> None:
    model = build_tiny(peft=peft, frozen_dtype="bfloat16")
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n in dtypes if is_trainable(n))
    assert dtypes["vpg.vision_model.embeddings.patch_embedding.weight"] == torch.bfloat16
    assert dtypes["vpg.query_tokens"] == torch.float32  # Q-Former stays fp32, as in transformers
    assert any(d == torch.bfloat16 for n, d in dtypes.items() if n.startswith("llm.") and not is_trainable(n))
    batch = batch_factory(model, ["what is it ?"], ["a star"])
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    left = batch_factory(model, ["what is it ?", "how many ?"], side="left")
    assert len(model.generate(**left, max_new_tokens=3)) == 2


def test_inspect_tiny_prints_parts(capsys, tmp_path) -> None:
    assert main(["inspect", "tiny", "--peft", "llama_adapter", "--extra-queries", "2"]) == 0
    out = capsys.readouterr().out
    for part in ("extra_queries", "projection", "peft", "= trainable", "frozen vision", "frozen llm", "= frozen"):
        assert part in out
    assert "llama_adapter adapter_len=4 adapter_layers=2" in out
    assert main(["inspect", "tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    parts = info["parameters"]
    assert parts["trainable"] == parts["extra_queries"] + parts["projection"] + parts["peft"]
    assert parts["extra_queries"] == 4 * 32


def test_inspect_checkpoint_and_paper(capsys, tmp_path) -> None:
    build_tiny(peft="none", num_extra_queries=1).save_pretrained(tmp_path / "ckpt")
    assert main(["inspect", str(tmp_path / "ckpt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["peft"] == 0 and info["parameters"]["extra_queries"] == 32
    assert main(["inspect", "paper", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["peft"] == 4_194_304 and info["config"]["llm_source"] == "huggyllama/llama-7b"
    with pytest.raises(SystemExit, match="neither a builder"):
        main(["inspect", str(tmp_path / "missing")])
