"""LaVIN's MM-Adapter (``mm_adapter``): starts as the frozen LLM, routes on the modality alone, and equals the
reference's prepended modality token that no later token attends to; cached decoding equals recomputation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from vict.connectors.base import VisionInput
from vict.methods.mm_adapter import HAS_IMAGE, MMAdapterSettings
from vict.methods.mm_adapter.adapter import GroupedLinear, MMAdapter
from vict.models.builders import build_tiny, paper_footprint, tiny_sources
from vict.settings import SettingsError


def _trained_like(model, seed: int = 5, scale: float = 0.3) -> None:
    """Non-zero experts, routers and modality embedding, as training leaves them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if model.method.owns(f"llm.{name}"):
                param.add_(torch.randn(param.shape, generator=gen) * scale)


def _ids(model, n: int = 7, rows: int = 2, seed: int = 0) -> torch.Tensor:
    vocab = model.base_llm.config.vocab_size
    return torch.randint(3, vocab, (rows, n), generator=torch.Generator().manual_seed(seed))


def _vision(rows: int, has_image: bool) -> VisionInput:
    return VisionInput(torch.zeros(rows, 0, 1), {HAS_IMAGE: torch.full((rows,), has_image)})


@pytest.mark.parametrize("position", ["attn", "attn_ffn"])
def test_a_fresh_model_is_the_frozen_llm_for_text_only_and_image_inputs(position: str, batch_factory) -> None:
    _, llm_dir = tiny_sources(seed=0)
    bare = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    model = build_tiny({"type": "mm_adapter", "position": position, "dropout": 0.0}, seed=0).eval()
    ids = _ids(model)
    with torch.no_grad():
        expected = bare(input_ids=ids).logits
        for has_image in (False, True):
            with model.method.bind(_vision(2, has_image)):
                got = model.llm(input_ids=ids).logits
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        # and through the whole model, visual tokens included: the LLM part adds nothing at init
        batch = batch_factory(model, ["what shape is left ?"], ["a circle"])
        out = model(**batch)
        with model.method.delta_disabled(model.llm):
            off = model(**batch)
    torch.testing.assert_close(out.logits, off.logits, rtol=0, atol=0)


def test_routing_depends_on_the_modality_alone() -> None:
    model = build_tiny({"type": "mm_adapter", "dropout": 0.0}, seed=0).eval()
    _trained_like(model)
    mixed = torch.tensor([True, False, True])
    with torch.no_grad(), model.method.routed(mixed) as first:
        first = [w.clone() for w in first]
        model.llm(input_ids=_ids(model, rows=3, seed=1))
        during = [a.routing.clone() for a in model.method._adapters]
    with torch.no_grad(), model.method.routed(mixed) as second:
        model.llm(input_ids=_ids(model, n=11, rows=3, seed=2))  # other tokens, another length
        second = [w.clone() for w in second]
    assert len(first) == len(model.base_llm.model.layers)
    for a, b, c in zip(first, second, during, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the tokens of the sequence never reach the router
        torch.testing.assert_close(a, c, rtol=0, atol=0)  # the LLM call did not change the routing
        assert a.shape == (3, 2) and torch.allclose(a.sum(-1), torch.ones(3))
        torch.testing.assert_close(a[0], a[2], rtol=0, atol=0)  # same modality, same routing
        assert not torch.equal(a[0], a[1])  # the modality token steers it
    # leaving the context clears the routing
    assert all(a.routing is None for a in model.method._adapters)


def test_equals_the_prepended_modality_token_that_no_later_token_attends_to() -> None:
    """The reference: [t_m ; x] at positions 0..L, a mask where no position > 0 sees position 0, every adapter
    routing on position 0 of its input. Ours: t_m's own one-token pass gives the routing, x runs alone at 0..L-1."""
    model = build_tiny({"type": "mm_adapter", "dropout": 0.0}, seed=0).eval()
    _trained_like(model)
    llm = model.base_llm
    ids = _ids(model, n=9, rows=2, seed=4)
    embeds = llm.get_input_embeddings()(ids)
    for has_image in (True, False):
        with torch.no_grad(), model.method.bind(_vision(2, has_image)):
            ours = llm(inputs_embeds=embeds).logits
        modality = llm.model.mm_modality.weight[int(has_image)].expand(2, 1, -1)
        full = torch.cat([modality, embeds], dim=1)
        n = full.shape[1]
        allowed = torch.tril(torch.ones(n, n, dtype=torch.bool))
        allowed[1:, 0] = False  # no later token attends to the modality token
        assert bool(allowed[0, 0]) and not bool(allowed[1:, 0].any())
        mask = torch.zeros(2, 1, n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)
        with torch.no_grad():  # no routing set: each adapter routes on position 0, the modality token
            reference = llm(inputs_embeds=full, attention_mask=mask, position_ids=torch.arange(n).expand(2, n)).logits
        torch.testing.assert_close(ours, reference[:, 1:], rtol=1e-4, atol=1e-5)


def test_cached_greedy_decoding_equals_full_recomputation(batch_factory, decoding) -> None:
    model = build_tiny({"type": "mm_adapter", "dropout": 0.0}, seed=0).eval()
    _trained_like(model)
    batch = batch_factory(model, ["what shape is left ?", "describe the image ."], side="left")
    decoding.assert_cached_equals_recomputed(model, batch, steps=6)


def test_adapter_parts_follow_the_reference() -> None:
    adapter = MMAdapter(16, dim=8, groups=2, dropout=0.0, temperature=10.0)
    assert all(torch.count_nonzero(p) == 0 for e in adapter.experts for p in e.parameters())  # zero-init experts
    assert torch.count_nonzero(adapter.down.bias) == 0 and torch.count_nonzero(adapter.down.weight) > 0
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(adapter(x), x, rtol=0, atol=0)
    # grouped up-projection: group g's outputs read only group g's inputs (a 1x1 Conv1d with groups=2)
    up = GroupedLinear(8, 16, 2)
    with torch.no_grad():
        up.weight.normal_()
        up.bias.normal_()
    conv = torch.nn.Conv1d(8, 16, 1, groups=2)
    with torch.no_grad():
        conv.weight.copy_(up.weight.reshape(16, 4, 1))
        conv.bias.copy_(up.bias)
    h = torch.randn(3, 5, 8)
    torch.testing.assert_close(up(h), conv(h.transpose(1, 2)).transpose(1, 2), rtol=1e-5, atol=1e-6)
    # the router's temperature flattens its softmax
    logits_in = torch.randn(4, 16)
    hot = torch.softmax(adapter.router(logits_in), -1)
    torch.testing.assert_close(adapter.route(logits_in), torch.softmax(adapter.router(logits_in) / 10.0, -1))
    assert (adapter.route(logits_in).max(-1).values <= hot.max(-1).values + 1e-7).all()


def test_paper_scale_count_and_bad_settings() -> None:
    parts = paper_footprint({"type": "mm_adapter"}, 0)["counts"]["parts"]
    d, blocks = 4096, 32
    per_block = (d * 8 + 8) + 2 * (d * 4 + d) + (d * 2 + 2)  # down, two grouped experts, router
    assert parts["method"]["trainable"] == blocks * per_block + 2 * d  # + the modality embedding
    assert 2.6e6 < parts["method"]["trainable"] < 2.7e6
    with pytest.raises(SettingsError) as err:
        MMAdapterSettings(dim=7, groups=2, temperature=0, position="ffn")
    assert len(err.value.problems) == 3
    with pytest.raises(ValueError, match=r"method.layers \[9\]"):
        build_tiny({"type": "mm_adapter", "layers": [9]}, seed=0)
