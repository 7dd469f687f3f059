"""``Method.delta_disabled(llm)``: with the delta off, the LLM's logits are the bare LLM's, bit for bit; with it
on (trained-like, non-zero LoRA B and adapter gates) they differ; leaving the context switches the delta back on."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from vict.methods.base import Method
from vict.models.builders import build_tiny, tiny_sources
from vict.models.vision_llm import VisionLLM


def _logits(llm: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return llm(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits


def _perturb_delta(model: VisionLLM) -> int:
    """Random non-zero values in every tensor the method added to the LLM (LoRA A/B, adaption prompts and gates),
    as training leaves them; returns how many tensors were changed."""
    gen = torch.Generator().manual_seed(3)
    changed = 0
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if model.method.owns(f"llm.{name}"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
                changed += 1
    return changed


V2 = {"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 2, "bias_tuning": True}


@pytest.mark.parametrize(
    "method", ["lora", "llama_adapter", "mm_adapter", "none", pytest.param(V2, id="llama_adapter-bias_tuning")]
)
def test_delta_off_is_the_bare_llm_and_on_differs(method) -> None:
    _, llm_dir = tiny_sources(seed=0)
    bare = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    model = build_tiny(method, seed=0)
    changed = _perturb_delta(model)
    assert (changed > 0) == (method != "none"), changed
    input_ids = torch.randint(3, bare.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    expected = _logits(bare, input_ids)

    on_before = _logits(model.llm, input_ids)
    with model.method.delta_disabled(model.llm):
        off = _logits(model.llm, input_ids)
    on_after = _logits(model.llm, input_ids)

    torch.testing.assert_close(off, expected, rtol=0, atol=0)
    torch.testing.assert_close(on_after, on_before, rtol=0, atol=0)
    if method == "none":
        torch.testing.assert_close(on_before, expected, rtol=0, atol=0)
    else:
        assert (on_before - expected).abs().max() > 1e-3, method


def test_a_method_that_adds_llm_parameters_must_say_how_to_disable_them() -> None:
    class Unsaid(Method):
        name = "unsaid"
        markers = (".lora_A.",)

    model = build_tiny("lora", seed=0)
    with pytest.raises(NotImplementedError, match=r"method 'unsaid' adds parameters.*Unsaid\.delta_disabled"):
        Unsaid().delta_disabled(model.llm)
