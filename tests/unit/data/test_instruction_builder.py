"""VICT instructions: each type gets the right inputs and target; templates validated; streams resumable."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from vict.constants import IMAGE_MARKER
from vict.data.prompts import KINDS, ExampleStream, InstructionBuilder, load_templates
from vict.data.records import QA, ImageRecord

RECORD = ImageRecord(
    image_id="7",
    image_path=Path("/imgs/7.png"),
    captions=["A red circle on the left.", "One shape."],
    qas=[
        QA("70", "What colour is the circle?", "red", "The circle is red.", "query", "attr"),
        QA("71", "Is there a square?", "no", "No, there is no square.", "verify", "obj"),
        QA("72", "How many shapes are there?", "1", None, "query", "global"),  # no sentence answer
    ],
)
QUESTIONS = {qa.question: qa for qa in RECORD.qas}


def _qa_in(prompt: str) -> list[QA]:
    return [qa for q, qa in QUESTIONS.items() if q in prompt]


@pytest.mark.parametrize("style", ["short", "sentence"])
@pytest.mark.parametrize("seed", range(8))
def test_every_kind_has_the_right_inputs_and_target(style: str, seed: int) -> None:
    builder = InstructionBuilder()
    answer = (lambda qa: qa.answer) if style == "short" else (lambda qa: qa.full_answer)
    for kind in KINDS:
        ex = builder.build(RECORD, kind, style, random.Random(seed))
        assert ex.prompt.count(IMAGE_MARKER) == 1 and ex.prompt.startswith(IMAGE_MARKER)
        assert (ex.kind, ex.image_id, ex.image_path) == (kind, "7", Path("/imgs/7.png"))
        captions_in_prompt = [c for c in RECORD.captions if c in ex.prompt]
        asked = _qa_in(ex.prompt)
        if kind == "cap":
            assert ex.style is None and ex.target in RECORD.captions and not captions_in_prompt and not asked
        elif kind == "qa":
            assert len(asked) == 1 and ex.target == answer(asked[0]) and not captions_in_prompt
            assert ex.question_id == asked[0].question_id
        elif kind == "qa_cap":
            assert ex.target in RECORD.captions and len(asked) == 1 and f"Answer: {answer(asked[0])}" in ex.prompt
        elif kind == "cap_qa":
            assert len(captions_in_prompt) == 1 and len(asked) == 1 and ex.target == answer(asked[0])
            assert ex.prompt.index(captions_in_prompt[0]) < ex.prompt.index(asked[0].question)
        elif kind == "qa_qa":
            assert len(asked) == 2 and not captions_in_prompt
            target_qa = max(asked, key=lambda qa: ex.prompt.index(qa.question))  # the question asked last
            context_qa = min(asked, key=lambda qa: ex.prompt.index(qa.question))
            assert ex.target == answer(target_qa) and f"Answer: {answer(context_qa)}" in ex.prompt
        if kind != "cap":
            assert ex.style == style
            # Sentence style never uses a QA without a sentence answer.
            assert style == "short" or all(qa.full_answer for qa in asked)


def test_style_is_selected_by_the_instruction_text() -> None:
    builder = InstructionBuilder()
    short = builder.prompt("qa", "short", question="Q?")
    sentence = builder.prompt("qa", "sentence", question="Q?")
    assert short != sentence and "Q?" in short and "Q?" in sentence


def test_can_build_follows_the_available_inputs() -> None:
    builder = InstructionBuilder()
    only_caps = ImageRecord("1", None, ["a caption"], [])
    one_q = ImageRecord("2", None, [], [QA("1", "q?", "a", None)])
    assert [k for k in KINDS if builder.can_build(only_caps, k)] == ["cap"]
    assert [k for k in KINDS if builder.can_build(one_q, k)] == ["qa"]
    assert not builder.can_build(one_q, "qa", "sentence")
    with pytest.raises(ValueError, match="cannot build 'qa_qa'"):
        builder.build(one_q, "qa_qa", "short", random.Random(0))


def test_inference_prompt_equals_training_prompt() -> None:
    builder = InstructionBuilder()
    ex = builder.build(RECORD, "cap_qa", "short", random.Random(3))
    qa = _qa_in(ex.prompt)[0]
    caption = next(c for c in RECORD.captions if c in ex.prompt)
    assert builder.prompt("cap_qa", "short", question=qa.question, caption=caption) == ex.prompt
    with pytest.raises(ValueError, match="needs \\['caption'\\]"):
        builder.prompt("cap_qa", "short", question="q?")
    with pytest.raises(ValueError, match="context_qa"):
        builder.prompt("qa_qa", "short", question="q?")


def test_templates_are_validated_with_every_problem_listed(tmp_path: Path) -> None:
    templates = load_templates()
    templates["qa"]["short"] = ["Question: {question}"]  # no marker
    templates["cap_qa"]["short"] = ["<image> {question}"]  # caption missing
    templates["bogus"] = {"any": "<image>"}
    with pytest.raises(ValueError) as e:
        InstructionBuilder(templates=templates)
    message = str(e.value)
    assert "qa.short" in message and "exactly once" in message
    assert "cap_qa.short" in message and "caption" in message
    assert "bogus" in message
    path = tmp_path / "t.yaml"
    path.write_text("cap: {any: '<image> Caption:'}\n")
    with pytest.raises(ValueError, match="qa: missing"):
        load_templates(path)


def test_custom_templates_with_variants_are_drawn() -> None:
    templates = load_templates()
    templates["cap"]["any"] = ["<image> Caption A:", "<image> Caption B:"]
    builder = InstructionBuilder(templates=templates)
    prompts = {builder.build(RECORD, "cap", None, random.Random(s)).prompt for s in range(30)}
    assert prompts == {"<image> Caption A:", "<image> Caption B:"}
    assert builder.prompt("cap", None) == "<image> Caption A:"


def test_ratios_drive_the_mix_and_are_validated(world_train) -> None:
    builder = InstructionBuilder(ratios={"cap": 3, "qa": 1})
    stream = ExampleStream(world_train, builder, seed=1)
    kinds = Counter(stream[i].kind for i in range(800))
    assert set(kinds) == {"cap", "qa"}
    assert 0.68 < kinds["cap"] / 800 < 0.82
    with pytest.raises(ValueError, match="ratios"):
        InstructionBuilder(ratios={"caption": 1.0})
    with pytest.raises(ValueError, match="ratios"):
        InstructionBuilder(ratios={"cap": -1.0, "qa": 2.0})


def test_stream_is_deterministic_and_resumable(world_train) -> None:
    a = ExampleStream(world_train, InstructionBuilder(), seed=5)
    b = ExampleStream(world_train, InstructionBuilder(), seed=5)
    first = [a[i] for i in range(120)]
    assert [b[i] for i in range(119, -1, -1)][::-1] == first, "example i must not depend on access order"
    resumed = b.iter_from(57)
    assert [next(resumed) for _ in range(63)] == first[57:]
    assert [ExampleStream(world_train, InstructionBuilder(), seed=6)[i] for i in range(20)] != first[:20]
    # One epoch visits every record once.
    n = len(a)
    assert n == len(world_train)
    assert sorted(a[i].image_id for i in range(n)) == sorted(r.image_id for r in world_train)
    kinds = Counter(ex.kind for ex in first)
    assert set(kinds) == set(KINDS)


def test_stream_drops_records_with_nothing_to_build() -> None:
    empty = ImageRecord("9", None, [], [])
    stream = ExampleStream([RECORD, empty], InstructionBuilder(), seed=0)
    assert len(stream) == 1 and stream.dropped == 1
    with pytest.raises(ValueError, match="none of the 1 records"):
        ExampleStream([empty], InstructionBuilder())


def test_the_miniature_templates_load_and_the_frozen_llm_ones_caption_from_the_image_alone() -> None:
    from vict.data.prompts import MINIATURE_FROZEN_LLM_TEMPLATES_PATH, MINIATURE_TEMPLATES_PATH

    tuned, frozen = load_templates(MINIATURE_TEMPLATES_PATH), load_templates(MINIATURE_FROZEN_LLM_TEMPLATES_PATH)
    assert frozen["cap"] == {"any": ["<image>"]} and tuned["cap"] != frozen["cap"]
    assert {k: v for k, v in frozen.items() if k != "cap"} == {k: v for k, v in tuned.items() if k != "cap"}
    for kind in ("qa", "cap_qa", "qa_qa"):  # answers follow "Short answer:", as in the zoo LMs' own text
        assert all(t.endswith("Short answer:") for t in frozen[kind]["short"]), kind
