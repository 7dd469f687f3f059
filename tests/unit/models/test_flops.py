"""Compute accounting (``vict.models.flops``): the documented prefill formula against a counted forward, and the
counted FLOPs of every part at paper scale on the meta device."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from vict.cli import main
from vict.models.builders import build_tiny, llama_7b_config, paper_footprint
from vict.models.flops import counted_flops, llm_prefill_flops, method_compute


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_the_formula_matches_a_counted_forward(device, kv_heads) -> None:
    """A tiny LLaMA (grouped-query attention too), counted with FlopCounterMode on real CPU kernels and on meta."""
    config = LlamaConfig(
        hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=kv_heads, vocab_size=300,
    )  # fmt: skip
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(config)
    for n in (1, 17, 96):
        embeds = torch.zeros(1, n, config.hidden_size, device=device)
        counted = counted_flops(lambda e=embeds: llm(inputs_embeds=e))
        formula = llm_prefill_flops(config, n)
        assert abs(formula / counted - 1) < 0.05, (n, formula, counted)


def test_the_formula_at_llama_7b_is_the_familiar_one() -> None:
    config = llama_7b_config()
    d, d_ff, vocab, blocks = 4096, 11008, 32000, 32
    for n in (32, 96, 288):
        block = 2 * n * (4 * d * d + 3 * d * d_ff) + 4 * n * n * d
        assert llm_prefill_flops(config, n) == blocks * block + 2 * n * d * vocab


def test_paper_scale_counts_on_the_meta_device() -> None:
    """BLIP-2's 32 + 32 query tokens, LaVIN's 9 [CLS] tokens of ViT-g, VLoRA's none: the LLM's tokens and prefill
    follow, the delta's cost is what the method adds, the VPG's is the same for the Q-Former connectors."""
    t = 32
    lora = paper_footprint("lora", 32, text_tokens=(t,))["compute"][t]
    lavin = paper_footprint("mm_adapter", 0, connector="lavin_cls", text_tokens=(t,))["compute"][t]
    vlora = paper_footprint("vlora", 32, text_tokens=(t,))["compute"][t]
    none = paper_footprint("none", 32, text_tokens=(t,))["compute"][t]
    assert (lora["visual_tokens"], lavin["visual_tokens"], vlora["visual_tokens"]) == (64, 9, 0)
    assert (lora["llm_tokens"], lavin["llm_tokens"], vlora["llm_tokens"]) == (96, 41, 32)
    for c in (lora, lavin, vlora, none):
        assert c["llm_bare"] == c["llm_formula"]  # LLaMA: the formula leaves out no matmul
        assert c["total"] == c["vpg"] + c["connector"] + c["llm"]
    assert none["llm"] == none["llm_bare"] and lora["llm"] > lora["llm_bare"] and vlora["llm"] > vlora["llm_bare"]
    assert vlora["llm"] < lavin["llm"] < lora["llm"]
    assert lora["vpg"] == vlora["vpg"] > lavin["vpg"] > 0  # ViT + Q-Former; ViT (and its adapters) up to the taps
    # LoRA's delta on q/v (r 8) in 32 blocks: 2 · n · r · (d + d) per projection
    assert lora["llm"] - lora["llm_bare"] == 32 * 2 * (2 * 96 * 8 * (4096 + 4096))


def test_a_tiny_model_and_the_cli(capsys) -> None:
    model = build_tiny("vlora", 4, seed=0)
    c = method_compute(model, 16)
    assert c["visual_tokens"] == 0 and c["llm_tokens"] == 16 and c["llm_bare"] == c["llm_formula"]
    with pytest.raises(ValueError, match="text_tokens=0"):
        method_compute(model, 0)
    assert main(["inspect", "paper", "--method", "vlora", "--flops", "--text-tokens", "32", "256", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["flops"]) == {"32", "256"} and out["flops"]["256"]["llm_tokens"] == 256
    assert main(["inspect", "tiny", "--method", "lora", "--flops"]) == 0
    assert "T=32" in capsys.readouterr().out
