"""VisionLLM: slot scatter, loss/logits contract, generation, cached features, errors (the training contract,
round trip and batched generation of every method: tests/unit/methods/test_method_matrix.py)."""

from __future__ import annotations

import pytest
import torch

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID
from vict.models.builders import build_tiny

PROMPTS = ["what shape is left ?", "describe the image .", "how many circles ?"]
TARGETS = ["a red circle", "two blue squares next to a star", "three"]


def test_visual_tokens_land_exactly_at_the_slots(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS, TARGETS)
    with torch.no_grad():
        visual = tiny_model.encode_images(batch["pixel_values"]).tokens
        embeds = tiny_model.embed_inputs(batch["input_ids"], visual)
    n = tiny_model.num_visual_tokens
    assert visual.shape == (3, n, 32)
    # Row layout: bos, n slots, text: the slot rows are the visual tokens in order, the rest are text embeddings.
    torch.testing.assert_close(embeds[:, 1 : 1 + n], visual)
    table = tiny_model.llm.get_input_embeddings().weight
    text_ids = batch["input_ids"][:, 1 + n :]
    torch.testing.assert_close(embeds[:, 1 + n :], table[text_ids])


def test_loss_is_mean_ce_on_shifted_targets_and_labelled_only_matches(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS, TARGETS)
    with torch.no_grad():
        full = tiny_model(**batch, logits_on_labelled_only=False)
        short = tiny_model(**batch, logits_on_labelled_only=True)
    labels = batch["labels"]
    keep = labels[:, 1:] != IGNORE_INDEX
    n_targets = int(keep.sum())
    assert full.logits.shape == (*labels.shape, tiny_model.llm.get_input_embeddings().num_embeddings)
    assert short.logits.shape == (n_targets, full.logits.shape[-1])
    torch.testing.assert_close(short.logits, full.logits[:, :-1][keep], rtol=1e-5, atol=1e-5)
    # By hand: mean over target tokens of -log p(label_{t+1} | <= t).
    logp = full.logits[:, :-1].log_softmax(-1)
    expected = -logp[keep].gather(1, labels[:, 1:][keep][:, None]).mean()
    torch.testing.assert_close(full.loss, expected)
    torch.testing.assert_close(short.loss, full.loss, rtol=1e-6, atol=1e-6)
    # Targets = every word of each TARGET plus eos, nothing else.
    tok = tiny_model.tokenizer
    assert n_targets == sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in TARGETS)


def test_padding_side_does_not_change_the_loss(tiny_model, batch_factory) -> None:
    right = batch_factory(tiny_model, PROMPTS, TARGETS, side="right")
    left = batch_factory(tiny_model, PROMPTS, TARGETS, side="left")
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(**right).loss, tiny_model(**left).loss, rtol=1e-5, atol=1e-6)


def test_wrong_slot_count_is_an_error_naming_the_row(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS, TARGETS)
    ids = batch["input_ids"].clone()
    ids[1, 1] = tiny_model.tokenizer.bos_token_id  # row 1 loses one slot
    with pytest.raises(ValueError, match=rf"exactly {tiny_model.num_visual_tokens} image slots.*row 1: 11"):
        tiny_model(batch["pixel_values"], ids, batch["attention_mask"], batch["labels"])
    ids = batch["input_ids"].clone()
    ids[0, -1] = 10_000
    with pytest.raises(ValueError, match="outside the LLM vocabulary"):
        tiny_model(batch["pixel_values"], ids, batch["attention_mask"])


def test_beam_search_runs_batched_and_matches_per_item(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS[:2], side="left")
    together = tiny_model.generate(**batch, max_new_tokens=5, num_beams=3)
    alone = []
    for i in range(2):
        keep = batch["attention_mask"][i].bool()
        alone += tiny_model.generate(
            batch["pixel_values"][i : i + 1],
            batch["input_ids"][i : i + 1, keep],
            batch["attention_mask"][i : i + 1, keep],
            max_new_tokens=5,
            num_beams=3,
        )
    assert together == alone


def test_generation_rejects_right_padding(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS, side="right")
    with pytest.raises(ValueError, match="left-padded"):
        tiny_model.generate(**batch, max_new_tokens=2)


@pytest.mark.parametrize("start", ["train", "eval", "stray"])
def test_generation_and_prefill_run_every_module_in_eval_mode_and_restore_the_flags(start, batch_factory) -> None:
    model = build_tiny("lora", num_extra_queries=4, seed=0)
    model.train(start == "train")
    if start == "stray":  # a submodule put in train mode behind the model's back
        model.base_llm.train(True)
    before = {name: m.training for name, m in model.named_modules()}
    seen: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: seen.append(name) if mod.training else None)
        for name, m in model.named_modules()
    ]
    batch = batch_factory(model, PROMPTS, side="left")
    model.generate(**batch, max_new_tokens=3)
    model.prefill(batch["pixel_values"][:1], batch["input_ids"][:1, -4:])
    for h in hooks:
        h.remove()
    assert seen == []  # no dropout fired anywhere
    after = {name: m.training for name, m in model.named_modules()}
    if start == "stray":  # as train(False) leaves it: every module in eval mode
        assert not any(after.values())
    else:
        assert after == before
    assert model.training == (start == "train")


def test_cached_features_give_the_same_loss_and_text(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS, TARGETS)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        direct = tiny_model(**batch).loss
        for training, level in ((True, "vision"), (False, "queries")):
            # Training caches the ViT output (the extra queries train); inference the Q-Former outputs.
            features = tiny_model.vision_features(batch["pixel_values"], training=training)
            assert features.level == level
            assert torch.equal(tiny_model(None, ids, mask, labels, features=features).loss, direct)
    left = batch_factory(tiny_model, PROMPTS, side="left")
    features = tiny_model.vision_features(left["pixel_values"])
    plain = tiny_model.generate(**left, max_new_tokens=4)
    cached = tiny_model.generate(None, left["input_ids"], left["attention_mask"], max_new_tokens=4, features=features)
    assert cached == plain


def test_slot_placeholder_is_never_embedded(tiny_model) -> None:
    # IMAGE_SLOT_ID is negative: embedding it would crash; the model maps it to pad before lookup.
    assert IMAGE_SLOT_ID < 0
    n = tiny_model.num_visual_tokens
    ids = torch.tensor([[1] + [IMAGE_SLOT_ID] * n + [5]])
    with torch.no_grad():
        out = tiny_model(torch.zeros(1, 3, 30, 30), ids, torch.ones_like(ids))
    assert out.logits.shape == (1, n + 2, len(tiny_model.tokenizer)) and out.loss is None


def test_labelled_only_logits_match_for_llama_adapter(batch_factory) -> None:
    model = build_tiny("llama_adapter", seed=0)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.2)  # open the zero-initialised gates
    batch = batch_factory(model, PROMPTS, TARGETS)
    with torch.no_grad():
        full = model(**batch, logits_on_labelled_only=False)
        short = model(**batch, logits_on_labelled_only=True)
    keep = batch["labels"][:, 1:] != IGNORE_INDEX
    torch.testing.assert_close(short.logits, full.logits[:, :-1][keep], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(short.loss, full.loss, rtol=1e-6, atol=1e-6)


def test_tiny_builder_is_deterministic_per_seed(tmp_path, batch_factory) -> None:
    a = build_tiny(seed=5, cache_dir=tmp_path / "a")
    b = build_tiny(seed=5, cache_dir=tmp_path / "b")
    c = build_tiny(seed=6, cache_dir=tmp_path / "a")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["connector.projection.weight"], sc["connector.projection.weight"])
    assert not torch.equal(
        sa["vpg.vision_model.embeddings.patch_embedding.weight"],
        sc["vpg.vision_model.embeddings.patch_embedding.weight"],
    )
    batch = batch_factory(a, PROMPTS, TARGETS)
    with torch.no_grad():
        assert torch.equal(a(**batch).loss, b(**batch).loss)


def test_slots_must_be_consecutive(tiny_model, batch_factory) -> None:
    batch = batch_factory(tiny_model, PROMPTS, TARGETS)
    ids = batch["input_ids"].clone()
    n = tiny_model.num_visual_tokens
    ids[2, 1], ids[2, n + 2] = ids[2, n + 2].item(), IMAGE_SLOT_ID  # move the first slot past a text token
    with pytest.raises(ValueError, match=r"must be consecutive.*rows \[2\]"):
        tiny_model(batch["pixel_values"], ids, batch["attention_mask"])


def test_gradient_checkpointing_gives_the_same_gradients(batch_factory) -> None:
    grads = []
    for checkpointing in (False, True):
        model = build_tiny("lora", seed=0)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        batch = batch_factory(model, PROMPTS, TARGETS)
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)
    assert grads[0]["vpg.extra_queries"].abs().sum() > 0
