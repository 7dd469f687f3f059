"""Per-row decoding in one batch (``VictEngine.complete_rows``): budgets, stop strings, sampling, streaming."""

from __future__ import annotations

import pytest
import torch

from vict.inference import Context, Decoding, VictEngine
from vict.inference.decoding import sample

QUESTIONS = ["what color is it?", "how many shapes are there?", "is it red?"]
CONTEXTS = [Context.none(), Context.own_caption(), Context.given_qa("what shape is it?", "square")]


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny("lora", num_extra_queries=4, seed=0).eval()


@pytest.fixture(params=[True, False], ids=["prefix", "plain"])
def engine(model, request) -> VictEngine:
    return VictEngine(model, reuse_prefix=request.param, reuse_features=request.param)


def _prompts(engine: VictEngine, images) -> list[str]:
    return engine.prompts(images, QUESTIONS, CONTEXTS, "short")[0]


def test_greedy_rows_give_generate_text_and_stream_it_exactly(engine, images) -> None:
    prompts = _prompts(engine, images)
    expected = engine.generate(images, prompts, 9)
    deltas: dict[int, list[str]] = {0: [], 1: [], 2: []}
    out = engine.complete_rows(images, prompts, [Decoding(9)] * 3, on_delta=lambda r, d: deltas[r].append(d))
    assert [c.text for c in out] == expected
    assert all(c.text for c in out)  # the random model never ends early: the comparisons below are not vacuous
    assert ["".join(deltas[r]) for r in range(3)] == expected
    assert max(len(d) for d in deltas.values()) > 1  # streamed in pieces, not at the end
    assert [c.finish_reason for c in out] == ["length"] * 3 and [c.completion_tokens for c in out] == [9] * 3
    assert [c.prompt_tokens for c in out] == engine.prompt_tokens(images, prompts)
    assert out[1].prompt_tokens > out[0].prompt_tokens  # the own caption is part of the answer prompt


def test_each_row_keeps_its_budget_and_stop_strings_in_a_batch(engine, images) -> None:
    prompts = _prompts(engine, images)
    long = engine.generate(images, prompts, 12)
    word = long[2].split()[2]
    rows = [Decoding(3), Decoding(12), Decoding(12, stop=(f" {word}",))]
    out = engine.complete_rows(images, prompts, rows)
    assert out[0].text == engine.generate(images[:1], prompts[:1], 3)[0] and out[0].finish_reason == "length"
    assert out[1].text == long[1]
    cut = long[2][: long[2].index(f" {word}")]
    assert out[2].text == cut and out[2].finish_reason == "stop"
    streamed: list[str] = []
    engine.complete_rows(images[2:], prompts[2:], rows[2:], on_delta=lambda r, d: streamed.append(d))
    assert "".join(streamed) == cut  # the stop string's start was held back, never sent


def test_a_seeded_sampled_row_is_the_same_alone_and_in_any_batch(engine, images) -> None:
    prompts = _prompts(engine, images)
    rows = [Decoding(10, temperature=1.0, seed=7), Decoding(10), Decoding(10, temperature=0.8, top_p=0.9, seed=3)]
    together = engine.complete_rows(images, prompts, rows)
    alone = [engine.complete_rows([images[i]], [prompts[i]], [rows[i]])[0] for i in range(3)]
    assert [c.text for c in together] == [c.text for c in alone]
    assert together[1].text == engine.generate(images[1:2], prompts[1:2], 10)[0]  # greedy rows untouched
    again = engine.complete_rows(images, prompts, rows)
    assert [c.text for c in again] == [c.text for c in together]
    other = engine.complete_rows(images[:1], prompts[:1], [Decoding(10, temperature=1.0, seed=8)])[0]
    greedy = engine.generate(images[:1], prompts[:1], 10)[0]
    assert len({together[0].text, other.text, greedy}) > 1  # the seed and the temperature change the draws


def test_a_cancelled_row_ends_at_its_next_token(engine, images) -> None:
    prompts = _prompts(engine, images)
    seen = {0: 0, 1: 0}

    def on_delta(row: int, text: str) -> None:
        seen[row] += 1

    out = engine.complete_rows(
        images[:2],
        prompts[:2],
        [Decoding(20), Decoding(20)],
        on_delta=on_delta,
        cancelled=lambda r: r == 0 and seen[0] >= 2,
    )
    assert out[0].finish_reason == "cancelled" and out[0].completion_tokens == 2
    assert out[1].finish_reason == "length" and out[1].completion_tokens == 20


def test_sample_draws_from_the_nucleus_only() -> None:
    logits = torch.tensor([5.0, 4.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(0)
    draws = {sample(logits, 1.0, 0.5, g) for _ in range(200)}
    assert draws == {0}  # token 0 alone holds > 50% of the mass
    draws = {sample(logits, 1.0, 0.9, g) for _ in range(400)}
    assert draws == {0, 1}
    draws = {sample(logits, 2.0, 1.0, g) for _ in range(2000)}
    assert draws == {0, 1, 2, 3}


def test_decoding_settings_are_checked() -> None:
    for bad in (
        {"max_new_tokens": 0},
        {"max_new_tokens": 4, "temperature": -0.1},
        {"max_new_tokens": 4, "temperature": 2.5},
        {"max_new_tokens": 4, "top_p": 0.0},
        {"max_new_tokens": 4, "stop": ("",)},
    ):
        with pytest.raises(ValueError):
            Decoding(**bad)
    assert Decoding(4).greedy and not Decoding(4, temperature=0.5).greedy
