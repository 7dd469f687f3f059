"""Every registered method, now and later, against the same contract (peft's test_custom_models.py pattern).

For each method on the tiny model: the training contract (trainable tensors change, frozen ones stay bit-identical,
``requires_grad`` is the model's predicate), the save/load round trip (identical logits; the checkpoint holds exactly
the files the model declares), batched greedy generation equal to per-item generation.
"""

from __future__ import annotations

import pytest
import torch

from vict.models.builders import build_tiny
from vict.models.vision_llm import VisionLLM
from vict.registry import method_names

METHODS = method_names()
V2 = {"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 2, "bias_tuning": True}
"""LLaMA-Adapter with V2's bias, scale and norm tuning: hooks on frozen layers, saved beside peft's adapter file."""
CASES = [*METHODS, pytest.param(V2, id="llama_adapter-bias_tuning")]
PROMPTS = ["what shape is left ?", "describe the image .", "how many circles ?"]
TARGETS = ["a red circle", "two blue squares next to a star", "three"]
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json"}


def test_the_built_in_methods_are_registered() -> None:
    assert {"lora", "llama_adapter", "none"} <= set(METHODS)


def perturb(model: VisionLLM, scale: float = 0.3, seed: int = 1) -> None:
    """Move every trainable tensor away from its init, as training would (LoRA B and adapter gates start at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                # V2's scales and biases touch every channel of every layer: training moves them little (at 0.3
                # the tiny LM writes one word for every prompt)
                moved = scale / 6 if ".v2_bias_scale." in name else scale
                param.add_(torch.randn(param.shape, generator=gen) * moved)


@pytest.mark.parametrize("name", CASES)
def test_training_changes_exactly_the_trainable_tensors(name: str, batch_factory) -> None:
    model = build_tiny(name, num_extra_queries=4, seed=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if model.is_trainable(n)}
    assert "vpg.extra_queries" in trainable and any(n.startswith("connector.") for n in trainable)
    parts = model.trainable_parameters_by_part()
    assert parts["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert parts["parts"]["llm"]["trainable"] == 0
    # only VPGTrans tunes anything of the vision tower: its last layer norm (LAVIS's ln_vision)
    vision = [n for n in trainable if n.startswith("vpg.vision_model.")]
    assert all(n.startswith("vpg.vision_model.post_layernorm.") for n in vision) and (name == "vpgtrans") == bool(
        vision
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    # Frozen parts stay in eval mode: no dropout in the frozen Q-Former / ViT / LLM.
    frozen_modules_training = [
        n for n, m in model.named_modules() if m.training and n and not model.method.owns(n)
        and not any(p.requires_grad for p in m.parameters(recurse=False))
    ]  # fmt: skip
    assert frozen_modules_training == []
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    batch = batch_factory(model, PROMPTS, TARGETS)
    losses = []
    for _ in range(4):
        loss = model(**batch).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0]
    for n, param in model.named_parameters():
        if n in trainable:
            assert not torch.equal(param, before[n]), f"{name}: trainable {n} did not change"
        else:
            assert torch.equal(param, before[n]), f"{name}: frozen {n} changed"
            assert param.grad is None, f"{name}: frozen {n} got a gradient"


@pytest.mark.parametrize("name", CASES)
def test_save_and_load_give_identical_logits_and_the_declared_files(name: str, tmp_path, batch_factory) -> None:
    model = build_tiny(name, num_extra_queries=4, seed=0)
    perturb(model)
    batch = batch_factory(model, PROMPTS, TARGETS)
    with torch.no_grad():
        expected = model(**batch, logits_on_labelled_only=False)
    out = model.save_pretrained(tmp_path / "ckpt")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == model.checkpoint_files() | TOKENIZER_FILES
    assert model.checkpoint_files() == {
        "config.json",
        "vict_trainable.safetensors",
        "MANIFEST.json",
        *model.method.checkpoint_files(),
    }
    again = VisionLLM.from_pretrained(out)
    with torch.no_grad():
        got = again(**batch, logits_on_labelled_only=False)
    assert torch.equal(got.logits, expected.logits)
    assert again.config.to_dict() == model.config.to_dict()
    state, reloaded = model.trainable_state_dict(), again.trainable_state_dict()
    assert state.keys() == reloaded.keys() and all(torch.equal(state[k], reloaded[k]) for k in state)
    # The checkpoint holds trainable tensors only: nothing frozen leaked into it.
    size = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    assert size < 4 * model.trainable_parameters_by_part()["trainable"] + 20_000


@pytest.mark.parametrize("name", CASES)
def test_batched_greedy_generation_equals_per_item(name: str, batch_factory, decoding) -> None:
    model = build_tiny(name, seed=0)
    perturb(model)
    batch = batch_factory(model, PROMPTS, side="left")
    assert (batch["attention_mask"] == 0).any(), "the test needs real left padding"
    together = model.generate(**batch, max_new_tokens=6)
    assert together == decoding.generate_one_by_one(model, batch, max_new_tokens=6)
    assert len(set(together)) > 1, "different images/prompts should not all give the same text"


@pytest.mark.parametrize("name", CASES)
def test_a_checkpoint_of_other_settings_is_refused_by_name(name: str, tmp_path) -> None:
    model = build_tiny(name, num_extra_queries=2, seed=0)
    out = model.save_pretrained(tmp_path / "ckpt")
    other = build_tiny(name, num_extra_queries=3, seed=0)
    with pytest.raises(ValueError, match=r"vpg\.extra_queries has shape \(1, 2, 32\).*expects \(1, 3, 32\)"):
        other.load_trainable(out)
