"""Answer modes on the tiny VICT model: self == caption mode with its own caption, batching, prompts, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vict.data.prompts import InstructionBuilder
from vict.recipes.generate import answer_questions, caption_images, open_image

TOKENS = 6  # short budgets keep the random tiny model fast


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny(peft="lora", num_extra_queries=4, seed=0)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    g = [(255, 0, 0), (0, 90, 255), (30, 200, 30)]
    out = []
    for k, colour in enumerate(g):
        im = Image.new("RGB", (40, 40), (255, 255, 255))
        im.paste(Image.new("RGB", (10 + 8 * k, 12), colour), (4 * k, 6 + 5 * k))
        out.append(im)
    return out


QUESTIONS = ["what color is the shape?", "how many shapes are there?", "is there a red circle?"]


def test_self_mode_equals_caption_mode_with_its_own_caption(model, images) -> None:
    own = answer_questions(
        model, images, QUESTIONS, mode="self", batch_size=2, max_new_tokens=TOKENS, caption_max_new_tokens=TOKENS
    )
    assert all(a.caption and a.mode == "self" for a in own)
    assert [a.caption for a in own] == caption_images(model, images, batch_size=3, max_new_tokens=TOKENS)
    given = answer_questions(
        model,
        images,
        QUESTIONS,
        mode="caption",
        captions=[a.caption for a in own],
        batch_size=3,
        max_new_tokens=TOKENS,
    )
    assert [a.answer for a in own] == [a.answer for a in given]
    assert [a.prompt for a in own] == [a.prompt for a in given]


def test_prompts_are_the_training_templates(model, images) -> None:
    builder = InstructionBuilder()
    out = answer_questions(
        model,
        images[:1],
        QUESTIONS[:1],
        mode="qa",
        context_qa=[("is it big?", "yes")],
        style="sentence",
        max_new_tokens=TOKENS,
    )
    assert out[0].prompt == builder.prompt(
        "qa_qa", "sentence", question=QUESTIONS[0], context_qa=("is it big?", "yes")
    )
    assert out[0].context_qa == ("is it big?", "yes")
    none = answer_questions(model, images[:1], QUESTIONS[:1], max_new_tokens=TOKENS)
    assert none[0].prompt == builder.prompt("qa", "short", question=QUESTIONS[0]) and none[0].caption is None


def test_batched_equals_one_by_one_and_deterministic(model, images) -> None:
    batched = answer_questions(model, images, QUESTIONS, batch_size=3, max_new_tokens=TOKENS)
    single = [answer_questions(model, [im], [q], max_new_tokens=TOKENS)[0] for im, q in zip(images, QUESTIONS)]
    assert [a.answer for a in batched] == [a.answer for a in single]
    again = answer_questions(model, images, QUESTIONS, batch_size=2, max_new_tokens=TOKENS)
    assert [a.answer for a in again] == [a.answer for a in batched]


def test_bad_inputs_name_the_item(model, images, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"empty question at position\(s\) \[1\]"):
        answer_questions(model, images[:2], ["ok?", "  "])
    with pytest.raises(ValueError, match="mode='caption' needs captions"):
        answer_questions(model, images[:1], ["ok?"], mode="caption")
    with pytest.raises(ValueError, match="mode='qa': context pair"):
        answer_questions(model, images[:1], ["ok?"], mode="qa", context_qa=[("q", "")])
    with pytest.raises(ValueError, match="mode='guess'"):
        answer_questions(model, images[:1], ["ok?"], mode="guess")
    with pytest.raises(ValueError, match="no such file"):
        open_image(tmp_path / "missing.png")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"fake.png: not a readable image"):
        open_image(tmp_path / "fake.png")
