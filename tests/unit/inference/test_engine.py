"""The inference layer on the tiny VICT model: contexts, self == caption with its own caption, batching, reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from vict.data.prompts import InstructionBuilder
from vict.inference import PROMPT_KINDS, Context, VictEngine, open_image

TOKENS = 6  # short budgets keep the random tiny model fast
QUESTIONS = ["what color is the shape?", "how many shapes are there?", "is there a red circle?"]


@pytest.fixture(scope="module")
def model():
    from vict.models.builders import build_tiny

    return build_tiny("lora", num_extra_queries=4, seed=0)


@pytest.fixture(scope="module")
def image_files(images, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    for k, im in enumerate(images):
        im.save(folder / f"{k}.png")
    return [folder / f"{k}.png" for k in range(len(images))]


def test_context_values_and_the_prompt_table() -> None:
    assert PROMPT_KINDS == {"none": "qa", "caption": "cap_qa", "qa": "qa_qa", "self": "cap_qa"}
    assert Context.given_caption("  a red   circle ").caption == "a red circle"
    assert Context.given_qa("is it big?", "yes").qa == ("is it big?", "yes")
    for bad in (lambda: Context.given_caption(" "), lambda: Context.given_qa("q", ""), lambda: Context("guess")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="takes no caption"):
        Context("none", caption="x")
    builder = InstructionBuilder()
    assert Context.own_caption().prompt(builder, "q?", "short", own_caption="") == builder.prompt(
        "cap_qa", "short", question="q?", caption="."
    )


def test_self_equals_caption_context_with_its_own_caption(model, images) -> None:
    engine = VictEngine(model, batch_size=2, max_new_tokens=TOKENS)
    own = engine.answer(images, QUESTIONS, Context.own_caption())
    assert all(a.caption and a.mode == "self" for a in own)
    fresh = VictEngine(model, batch_size=3, max_new_tokens=TOKENS)
    assert [a.caption for a in own] == fresh.caption(images)
    given = fresh.answer(images, QUESTIONS, [Context.given_caption(a.caption) for a in own])
    assert [a.answer for a in own] == [a.answer for a in given]
    assert [a.prompt for a in own] == [a.prompt for a in given]


def test_prompts_are_the_training_templates(model, images) -> None:
    builder = InstructionBuilder()
    engine = VictEngine(model, max_new_tokens=TOKENS)
    (out,) = engine.answer(images[:1], QUESTIONS[:1], Context.given_qa("is it big?", "yes"), style="sentence")
    assert out.prompt == builder.prompt("qa_qa", "sentence", question=QUESTIONS[0], context_qa=("is it big?", "yes"))
    assert out.context_qa == ("is it big?", "yes") and out.mode == "qa"
    (none,) = engine.answer(images[:1], QUESTIONS[:1])
    assert none.prompt == builder.prompt("qa", "short", question=QUESTIONS[0]) and none.caption is None


def test_batched_equals_one_by_one_and_mixed_contexts(model, images) -> None:
    contexts = [Context.none(), Context.given_caption("a shape."), Context.own_caption()]
    batched = VictEngine(model, batch_size=3, max_new_tokens=TOKENS).answer(images, QUESTIONS, contexts)
    single = [
        VictEngine(model, batch_size=1, max_new_tokens=TOKENS).answer([im], [q], c)[0]
        for im, q, c in zip(images, QUESTIONS, contexts)
    ]
    assert [a.answer for a in batched] == [a.answer for a in single]
    assert [a.mode for a in batched] == ["none", "caption", "self"]


def test_features_and_captions_are_made_once_per_image_with_identical_outputs(model, image_files) -> None:
    # 12 questions on 3 images, in an order that mixes images within and across batches.
    paths = [image_files[k % 3] for k in range(12)]
    questions = [QUESTIONS[k % 3] for k in range(12)]
    plain = VictEngine(model, batch_size=5, max_new_tokens=TOKENS, reuse_features=False)
    engine = VictEngine(model, batch_size=5, max_new_tokens=TOKENS)
    for context in (Context.none(), Context.given_caption("a shape."), Context.own_caption()):
        got = engine.answer(paths, questions, context)
        assert [a.answer for a in got] == [a.answer for a in plain.answer(paths, questions, context)]
    assert engine.cache.encoded == 3 and len(engine.cache) == 3  # once per image, across every context
    assert engine.caption(image_files) == plain.caption(image_files)
    assert engine.cache.encoded == 3
    engine.release()
    assert len(engine.cache) == 0
    # Bounded: with room for 2 images, the least recently used is recomputed, with the same output.
    small = VictEngine(model, batch_size=5, max_new_tokens=TOKENS, max_images=2)
    assert small.caption(image_files) == plain.caption(image_files) and len(small.cache) <= 3
    assert [a.answer for a in small.answer(paths, questions)] == [a.answer for a in plain.answer(paths, questions)]


def test_text_only_questions_are_the_training_text_only_rows(model, images) -> None:
    """A ``None`` image: the prompt the image row gets, its marker made ``Image: N/A`` as training's text-only rows,
    decoded with no image slots; batched with image rows, each row answers as alone."""
    from vict.data.mixing import text_only_prompt

    engine = VictEngine(model, batch_size=4, max_new_tokens=TOKENS)
    contexts = [Context.none(), Context.given_caption("a red circle"), Context.given_qa("is it big?", "yes")]
    mixed = engine.answer([None, images[0], None], QUESTIONS, contexts)
    with_image = VictEngine(model, max_new_tokens=TOKENS).answer([images[0]] * 3, QUESTIONS, contexts)
    for k in (0, 2):
        assert mixed[k].prompt == text_only_prompt(with_image[k].prompt)
        assert mixed[k].prompt.startswith("Image: N/A") and "<image>" not in mixed[k].prompt
        alone = VictEngine(model, max_new_tokens=TOKENS).generate([None], [mixed[k].prompt], TOKENS)
        assert mixed[k].answer == alone[0]
    assert mixed[1].answer == with_image[1].answer and mixed[1].prompt == with_image[1].prompt
    with pytest.raises(ValueError, match=r"no image at position\(s\) \[1\] in a 'self' context"):
        engine.answer([images[0], None], QUESTIONS[:2], Context.own_caption())
    with pytest.raises(ValueError, match=r"no image at position\(s\) \[0\]: a caption needs an image"):
        engine.caption([None])


def test_bad_inputs_name_the_item(model, images, tmp_path: Path) -> None:
    engine = VictEngine(model, max_new_tokens=TOKENS)
    with pytest.raises(ValueError, match=r"empty question at position\(s\) \[1\]"):
        engine.answer(images[:2], ["ok?", "  "])
    with pytest.raises(ValueError, match=r"one Context for all questions or one per question \(2\), got 1"):
        engine.answer(images[:2], ["a?", "b?"], [Context.none()])
    with pytest.raises(ValueError, match="style='long'"):
        engine.answer(images[:1], ["ok?"], style="long")
    with pytest.raises(ValueError, match="no such file"):
        open_image(tmp_path / "missing.png")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"fake.png: not a readable image") as bad:
        open_image(tmp_path / "fake.png", what="--image")
    # named once, and without the data-set runs' advice on skipping bad images (no use to one image)
    assert str(bad.value).count("fake.png") == 1 and str(bad.value).startswith("--image ")
    assert "data.bad_input=skip" not in str(bad.value) and str(bad.value).endswith("re-download or remove it")
