"""LaVIN's connector (``lavin_cls``) with the MM-Adapter: the [CLS] tokens of the tapped blocks, cached features equal
to recomputed ones, what trains, the save/load round trip, and its errors."""

from __future__ import annotations

import pytest
import torch

from vict.connectors.base import VisionFeatures
from vict.models.builders import build_tiny
from vict.models.vision_llm import VisionLLM

LAVIN = {"type": "lavin_cls", "every": 2, "hidden": 16}
PROMPTS = ["what shape is left ?", "describe the image ."]
TARGETS = ["a red circle", "two blue squares"]


def _lavin(vision_adapters: bool = True, **kw) -> VisionLLM:
    connector = {**LAVIN, "vision_adapters": vision_adapters}
    return build_tiny({"type": "mm_adapter", "dropout": 0.0}, num_extra_queries=0, connector=connector, **kw)


@pytest.mark.parametrize("vision_adapters", [False, True], ids=["plain-tower", "tower-adapters"])
def test_cls_tokens_after_every_kth_block(batch_factory, vision_adapters) -> None:
    """The tapped blocks' [CLS] tokens; fresh tower adapters leave them unchanged (zero-initialised)."""
    model = _lavin(vision_adapters, seed=0)
    blocks = model.vpg.vision_model.config.num_hidden_layers
    assert model.num_visual_tokens == blocks // 2 and model.connector.taps == tuple(range(2, blocks + 1, 2))
    batch = batch_factory(model, PROMPTS, TARGETS)
    pixels = batch["pixel_values"]
    tower = model.vpg.vision_model
    with torch.no_grad():
        plain = _lavin(False, seed=0).vpg.vision_model
        hidden = plain(pixel_values=pixels, output_hidden_states=True).hidden_states
        want = torch.stack([tower.post_layernorm(hidden[i][:, 0]) for i in range(2, blocks + 1, 2)], dim=1)
        got = model.connector.features(model.vpg, pixels, "cls")
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        # the last tap is the [CLS] of the tower's own output
        torch.testing.assert_close(got[:, -1], tower(pixel_values=pixels).last_hidden_state[:, 0])
        # training caches the frozen tower's [CLS] tokens (pixels when adapters inside it train): the same loss
        features = model.vision_features(pixels, training=True)
        assert features.level == ("pixels" if vision_adapters else "cls")
        a = model(**batch).loss
        b = model(**{k: v for k, v in batch.items() if k != "pixel_values"}, features=features).loss
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_what_trains_and_the_round_trip(tmp_path, batch_factory) -> None:
    model = _lavin(seed=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and p.numel()}  # (0 extra queries)
    assert trainable and all(n.startswith("connector.") or model.method.owns(n) for n in trainable)
    assert any(n.startswith("connector.vision_adapters.") for n in trainable)
    assert not any(n.startswith(("vpg.", "llm.")) and not model.method.owns(n) for n in trainable)
    tower = {n: p.detach().clone() for n, p in model.vpg.vision_model.named_parameters()}
    start = {n: p.detach().clone() for n, p in model.connector.vision_adapters.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = batch_factory(model, PROMPTS, TARGETS)
    model.train()
    losses = []
    for _ in range(4):
        loss = model(**batch).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0]
    # the tower's adapters learned (their up-projections left zero), the tower itself did not move
    moved = [n for n, p in model.connector.vision_adapters.named_parameters() if not torch.equal(p, start[n])]
    assert any(".experts." in n for n in moved)
    assert all(torch.equal(p, tower[n]) for n, p in model.vpg.vision_model.named_parameters())
    model.eval()
    pixels = batch["pixel_values"]
    with torch.no_grad():  # so the [CLS] tokens now differ from the bare tower's
        bare = _lavin(False, seed=0)
        plain = bare.connector.features(bare.vpg, pixels, "cls")
        assert not torch.allclose(model.connector.features(model.vpg, pixels, "cls"), plain)
    model.save_pretrained(tmp_path / "ckpt")
    again = VisionLLM.from_pretrained(tmp_path / "ckpt")
    assert again.connector.name == "lavin_cls" and again.num_visual_tokens == model.num_visual_tokens
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits, rtol=0, atol=0)


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"model\.num_extra_queries: 0"):
        build_tiny({"type": "mm_adapter"}, num_extra_queries=4, connector=LAVIN, seed=0)
    with pytest.raises(ValueError, match=r"connector\.vision_adapter_dim=3"):
        build_tiny({"type": "mm_adapter"}, num_extra_queries=0, connector={**LAVIN, "vision_adapter_dim": 3})
    with pytest.raises(ValueError, match=r"connector\.every=99"):
        build_tiny({"type": "mm_adapter"}, num_extra_queries=0, connector={"type": "lavin_cls", "every": 99})
    features = VisionFeatures("queries", torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="no feature level 'queries'"):
        _lavin(seed=0).encode_images(features=features)
