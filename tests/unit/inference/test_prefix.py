"""Prefix reuse: each image's prefix is prefilled once and continued from, with the outputs of prefilling every
prompt whole, for every method, every context, with and without the feature cache, mixed with text-only rows."""

from __future__ import annotations

import pytest
import torch

from vict.inference import Context, VictEngine
from vict.inference.prefix import PrefixCache, common_prefix, unpadded

TOKENS = 7
QUESTIONS = ["what color is the shape?", "how many shapes are there?", "is there a red circle?", "where is it?"]
CONTEXTS = [
    Context.none(),
    Context.given_caption("a red circle left of a square"),
    Context.given_qa("what shape is it?", "a circle"),
    Context.own_caption(),
]


def trained_looking(method: str | dict, **kwargs):
    """A tiny model whose zero-initialised deltas are moved off zero, so they shape every output."""
    from vict.models.builders import build_tiny

    model = build_tiny(method, seed=0, **kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


@pytest.fixture(scope="module")
def lora():
    return trained_looking("lora", num_extra_queries=4)


def test_common_prefix_holds_all_slots_or_none() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4, 6]], -200, 2) == [1, 2, 3]
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]], -200, 2) == [1, 2, 3]  # the first row is all prefix
    assert common_prefix([[7, 1], [8, 1]], -200, 2) == [] and common_prefix([], -200, 2) == []
    assert common_prefix([[1, -200, -200, 5], [1, -200, -200, 6]], -200, 2) == [1, -200, -200]
    assert common_prefix([[1, -200, 5], [1, -200, -200, 6]], -200, 2) == [1]  # never half an image
    ids = torch.tensor([[0, 0, 5, 6], [3, 4, 5, 6]])
    assert unpadded(ids, torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])) == [[5, 6], [3, 4, 5, 6]]
    cache = PrefixCache([5, 6], max_images=None)
    assert cache.matches([5, 6, 1]) and not cache.matches([5, 6]) and not cache.matches([6, 5, 1])
    assert not PrefixCache([], None).matches([1, 2])


def answers(engine: VictEngine, images, questions, contexts) -> list[tuple[str, str | None]]:
    return [(a.answer, a.caption) for a in engine.answer(images, questions, contexts)]


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("lora", {"num_extra_queries": 4}),
        ("lora", {"num_extra_queries": 4, "llm_arch": "opt"}),  # learned positions, not rotary
        ("llama_adapter", {}),
        ({"type": "llama_adapter", "adapter_len": 4, "adapter_layers": 2, "bias_tuning": True}, {}),
        ("mm_adapter", {"num_extra_queries": 0, "connector": {"type": "lavin_cls", "every": 1, "hidden": 16}}),
        ("vlora", {}),
    ],
)
def test_reuse_gives_the_outputs_of_whole_prompts_for_every_method(method: str | dict, kwargs: dict, images) -> None:
    model = trained_looking(method, **kwargs)
    n = 10  # three images asked in every context, mixed across batches of 4
    asked = [images[k % 3] for k in range(n)]
    questions = [QUESTIONS[k % 4] for k in range(n)]
    contexts = [CONTEXTS[k % 4] for k in range(n)]
    captioned = {k % 3 for k in range(n) if contexts[k].kind == "self"}
    whole = VictEngine(model, batch_size=4, max_new_tokens=TOKENS, reuse_prefix=False)
    expected = answers(whole, asked, questions, contexts)
    for reuse_features in (True, False):
        engine = VictEngine(model, batch_size=4, max_new_tokens=TOKENS, reuse_features=reuse_features)
        assert answers(engine, asked, questions, contexts) == expected, (method, reuse_features)
        prefixes = engine.prefixes
        assert prefixes is not None and len(prefixes.prefix_ids) >= 1 + model.num_visual_tokens
        # once per image: the self captions and every answer continue from the same three prefixes
        assert prefixes.computed == 3 and prefixes.hits == n + len(captioned)
    assert whole.prefixes is None


def test_the_prefix_is_bos_and_the_image_slots_with_these_templates(lora, images) -> None:
    from vict.constants import IMAGE_SLOT_ID

    engine = VictEngine(lora, max_new_tokens=TOKENS)
    engine.caption(images[:1])
    ids = engine.prefixes.prefix_ids
    assert ids[1:] == [IMAGE_SLOT_ID] * lora.num_visual_tokens and len(ids) == 1 + lora.num_visual_tokens


def test_text_only_rows_and_foreign_prompts_take_the_plain_path(lora, images) -> None:
    asked = [images[0], None, images[1], None, images[0]]
    prompts = [
        "<image> Question: what is it? Short answer:",
        "Question: what is two and two? Short answer:",
        "Look: <image> what colour?",  # does not start with the shared prefix
        "Describe a red circle.",
        "<image> Describe the image briefly.",
    ]
    whole = VictEngine(lora, batch_size=5, reuse_prefix=False).complete(asked, prompts, TOKENS)
    engine = VictEngine(lora, batch_size=5)
    assert engine.complete(asked, prompts, TOKENS) == whole
    assert engine.prefixes.computed == 1 and engine.prefixes.hits == 2
    one_by_one = [VictEngine(lora, batch_size=1).complete([im], [p], TOKENS)[0] for im, p in zip(asked, prompts)]
    assert one_by_one == whole


def test_bounded_and_released_with_the_same_outputs(lora, images) -> None:
    asked = [images[k % 3] for k in range(9)]
    questions = [QUESTIONS[k % 4] for k in range(9)]
    expected = answers(VictEngine(lora, reuse_prefix=False, max_new_tokens=TOKENS), asked, questions, CONTEXTS[0])
    small = VictEngine(lora, batch_size=2, max_new_tokens=TOKENS, max_images=1)
    assert answers(small, asked, questions, CONTEXTS[0]) == expected
    assert len(small.prefixes) <= 2  # the batch in use may hold two images beyond the bound of one
    engine = VictEngine(lora, max_new_tokens=TOKENS)
    engine.answer(asked, questions)
    assert len(engine.prefixes) == 3
    engine.release()
    assert len(engine.prefixes) == 0
    assert answers(engine, asked, questions, CONTEXTS[0]) == expected and engine.prefixes.computed == 6


def test_a_prompt_that_is_all_prefix_takes_the_plain_path(lora, images) -> None:
    # The frozen-LLM templates caption with "<image>" alone: the prefix is BOS and the slots, the captions are made
    # whole, and every answer continues from the prefix.
    from vict.data.prompts import MINIATURE_FROZEN_LLM_TEMPLATES_PATH, InstructionBuilder, load_templates

    builder = InstructionBuilder(templates=load_templates(MINIATURE_FROZEN_LLM_TEMPLATES_PATH))
    asked = [images[k % 3] for k in range(6)]
    questions = [QUESTIONS[k % 4] for k in range(6)]
    whole = VictEngine(lora, builder=builder, max_new_tokens=TOKENS, reuse_prefix=False)
    expected = answers(whole, asked, questions, Context.own_caption())
    engine = VictEngine(lora, builder=builder, max_new_tokens=TOKENS)
    assert answers(engine, asked, questions, Context.own_caption()) == expected
    assert len(engine.prefixes.prefix_ids) == 1 + lora.num_visual_tokens
    assert engine.prefixes.computed == 3 and engine.prefixes.hits == 6  # the answers only
