"""Mixed-modality streams: ScienceQA problems and text-only rows mixed into VICT's instruction stream at the
configured ratios, each example a pure function of (seed, index); text-only rows carry no image."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from vict.constants import IMAGE_MARKER
from vict.data.collate import is_text_only
from vict.data.mixing import MixedStream, ProblemStream, problem_example, to_text_only
from vict.data.prompts import Example, ExampleStream, InstructionBuilder
from vict.data.scienceqa import TEXT_ONLY_PREFIX, ScienceQAProblem


def _problem(pid: str, image: bool) -> ScienceQAProblem:
    return ScienceQAProblem(
        pid=pid,
        question="Which word names a colour?",
        choices=("circle", "red", "large"),
        answer=1,
        hint="" if image else "A red circle is on the left.",
        image=Path(f"/x/images/train/{pid}/image.png") if image else None,
        subject="language science",
        topic="vocabulary",
        category="word categories",
        grade="grade2",
        lecture="",
        solution="Red is a colour.",
        split="train",
    )


@pytest.fixture()
def images_stream(world_train) -> ExampleStream:
    builder = InstructionBuilder(ratios={"cap": 1, "qa": 1, "qa_cap": 1, "cap_qa": 1, "qa_qa": 1}, seed=0)
    return ExampleStream(world_train, builder, seed=0)


def test_problem_examples_are_image_rows_or_text_rows() -> None:
    with_image, text = problem_example(_problem("1", True)), problem_example(_problem("2", False))
    assert with_image.prompt.startswith(IMAGE_MARKER) and not is_text_only(with_image)
    assert text.prompt.startswith(TEXT_ONLY_PREFIX) and IMAGE_MARKER not in text.prompt and is_text_only(text)
    assert with_image.target == text.target == "The answer is B."
    assert "(A) circle (B) red (C) large" in text.prompt and "Context: A red circle is on the left." in text.prompt


def test_to_text_only_keeps_the_text_and_drops_the_image() -> None:
    ex = Example("cap_qa", f"{IMAGE_MARKER} Context: a red circle. Question: colour? Short answer:", "red", "7",
                 Path("/img/7.png"), "short")  # fmt: skip
    text = to_text_only(ex)
    assert text.prompt == f"{TEXT_ONLY_PREFIX} Context: a red circle. Question: colour? Short answer:"
    assert text.image_path is None and text.target == "red" and text.kind == "cap_qa_text" and is_text_only(text)
    with pytest.raises(ValueError, match="no '<image>'"):
        to_text_only(text)


def test_mixed_stream_ratios_and_determinism(images_stream: ExampleStream) -> None:
    problems = ProblemStream([_problem(str(i), i % 2 == 0) for i in range(10)], seed=0)
    mixed = MixedStream(images_stream, problems, sqa_ratio=0.3, text_only_ratio=0.5, seed=3)
    n = 2000
    kinds = Counter(mixed[i].kind for i in range(n))
    assert abs(kinds["sqa"] / n - 0.3) < 0.04
    cap_qa = kinds["cap_qa"] + kinds["cap_qa_text"]
    assert cap_qa > 100 and abs(kinds["cap_qa_text"] / cap_qa - 0.5) < 0.1
    assert not {k for k in kinds} - {"sqa", "cap", "qa", "qa_cap", "cap_qa", "qa_qa", "cap_qa_text"}
    # a pure function of (seed, i): any order, any fresh stream
    again = MixedStream(images_stream, problems, sqa_ratio=0.3, text_only_ratio=0.5, seed=3)
    assert [again[i] for i in (1500, 3, 77)] == [mixed[1500], mixed[3], mixed[77]]
    assert len(mixed) == round(len(images_stream) / 0.7)
    # with no ratios the mixed stream is the image stream itself
    plain = MixedStream(images_stream, None, 0.0, 0.0, seed=3)
    assert [plain[i] for i in range(20)] == [images_stream[i] for i in range(20)]


def test_bad_mixes_are_refused(images_stream: ExampleStream) -> None:
    with pytest.raises(ValueError, match="needs ScienceQA problems"):
        MixedStream(images_stream, None, sqa_ratio=0.2)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        MixedStream(images_stream, None, text_only_ratio=1.5)
