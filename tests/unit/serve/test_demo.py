"""The Gradio demo's handlers (``vict.serve.demo``) and ``vict demo``'s options, without a browser.

The handlers stream an answer that grows by appending and ends at the engine's own answer, in every context; bad
input raises ``gr.Error`` with a message saying what to do. The browser tier (``tests/browser``) drives the page.
"""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path

import pytest
from PIL import Image

from vict.inference import Context, VictEngine
from vict.models.feature_cache import CONTENT_KEY
from vict.serve.batcher import Batcher, Job

gr = pytest.importorskip("gradio", reason="the demo needs gradio (pip install 'vict[demo]')")

from vict.serve import demo  # noqa: E402  (after the skip: the module imports gradio lazily, its tests need it)
from vict.serve.demo_cli import example_images, render_world_examples  # noqa: E402

QUESTION = "what color is it?"
BUDGET = 6


@pytest.fixture(scope="module")
def engine() -> VictEngine:
    from vict.models.builders import build_tiny

    return VictEngine(build_tiny("lora", num_extra_queries=4, seed=0).eval())


@pytest.fixture(scope="module")
def batcher(engine: VictEngine):
    b = Batcher(engine).start()
    yield b
    b.stop()


def test_build_demo_has_the_components_the_browser_tests_find(engine, batcher, tmp_path: Path) -> None:
    examples = render_world_examples(tmp_path / "examples", n=2)
    blocks = demo.build_demo(engine, batcher, examples)
    assert isinstance(blocks, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    for elem_id in ("image", "question", "context", "caption-input", "qa-question", "qa-answer", "ask"):
        assert f"vict-{elem_id}" in ids
    assert {"vict-caption-button", "vict-own-caption", "vict-answer", "vict-max-tokens"} <= ids
    slider = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "vict-max-tokens")
    assert slider.value == engine.answer_budget("short")


@pytest.mark.parametrize(
    ("kind", "typed", "context"),
    [
        ("none", {}, Context.none()),
        ("caption", {"caption": "a red square"}, Context.given_caption("a red square")),
        (
            "qa",
            {"qa_question": "what shape is it?", "qa_answer": "square"},
            Context.given_qa("what shape is it?", "square"),
        ),
        ("self", {}, Context.own_caption()),
    ],
    ids=["none", "caption", "qa", "self"],
)
def test_ask_streams_the_engines_answer(engine, batcher, images, kind, typed, context) -> None:
    image = images[0]
    outputs = list(
        demo.ask(
            batcher,
            image,
            QUESTION,
            kind,
            typed.get("caption"),
            typed.get("qa_question"),
            typed.get("qa_answer"),
            "short",
            BUDGET,
            0.0,
        )
    )
    want = engine.answer([image], [QUESTION], context, "short", max_new_tokens=BUDGET)[0]
    answers = [a for _, a in outputs]
    assert answers[0] == "" and answers[-1] == want.answer
    assert all(later.startswith(earlier) for earlier, later in pairwise(answers))  # grows by appending
    assert len(set(answers)) > 2  # streamed: more than "" and the final text
    own = outputs[-1][0]
    if kind == "self":
        assert own == want.caption == engine.caption([image])[0]
    else:
        assert not isinstance(own, str)  # gr.skip(): the own-caption box is left as it is
    assert CONTENT_KEY not in image.info  # the caller's image is not touched


def test_own_caption_is_the_engines_caption(engine, batcher, images) -> None:
    assert demo.own_caption(batcher, images[1]) == engine.caption([images[1]])[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"image": None}, "Upload an image first"),
        ({"question": "  "}, "Type a question"),
        ({"kind": "caption", "caption": " "}, "Type a caption"),
        ({"kind": "qa", "qa_question": "what shape is it?"}, "Type both a question and its answer"),
        ({"max_tokens": 0}, "max_new_tokens=0"),
        ({"temperature": 3.0}, "temperature=3.0"),
    ],
)
def test_bad_input_raises_a_gradio_error(batcher, images, args, message) -> None:
    call = {
        "image": images[0],
        "question": QUESTION,
        "kind": "none",
        "caption": None,
        "qa_question": None,
        "qa_answer": None,
        "style": "short",
        "max_tokens": BUDGET,
        "temperature": 0.0,
    } | args
    with pytest.raises(gr.Error, match=message):
        list(demo.ask(batcher, **call))


def test_a_full_queue_is_a_gradio_error_not_a_traceback(engine, images) -> None:
    idle = Batcher(engine, max_queue=1)  # not started: nothing leaves the queue
    idle.submit(Job(images[0], QUESTION, Context.none(), demo.make_decoding(2, 0), lambda event: None))
    with pytest.raises(gr.Error, match="busy"):
        list(demo.ask(idle, images[0], QUESTION, "none", None, None, None, "short", 2, 0))
    with pytest.raises(gr.Error, match="busy"):
        demo.own_caption(idle, images[0])


def test_content_key_names_the_pixels(images) -> None:
    a, b = demo.content_keyed(images[0]), demo.content_keyed(images[0].copy())
    assert a.info[CONTENT_KEY] == b.info[CONTENT_KEY]
    assert demo.content_keyed(images[1]).info[CONTENT_KEY] != a.info[CONTENT_KEY]
    assert demo.content_keyed(images[0].convert("RGBA")).mode == "RGB"


def test_world_examples_render_offline(tmp_path: Path) -> None:
    paths = render_world_examples(tmp_path)
    assert len(paths) == 6 and all(Image.open(p).size == (64, 64) for p in paths)
    assert example_images(tmp_path) == sorted(paths)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        example_images(tmp_path / "empty")


def test_demo_cli_refuses_a_bad_checkpoint_and_has_no_share_option(tmp_path: Path, capsys) -> None:
    from vict.cli import main

    assert main(["demo", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vict demo: error: ") and "not a VICT checkpoint" in err
    with pytest.raises(SystemExit):
        main(["demo", "--checkpoint", str(tmp_path), "--share"])


def test_demo_cli_without_gradio_says_how_to_install_it(tmp_path: Path, capsys, monkeypatch) -> None:
    from vict.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert main(["demo", "--checkpoint", str(tmp_path)]) == 2
    assert 'pip install "vict[demo]"' in capsys.readouterr().err
