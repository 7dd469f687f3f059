"""``vict demo`` in a real browser: upload an image, ask in each context, read the streamed answer off the page.

Each answer on the page must be the one ``VictEngine.answer`` gives for the same image, question, context, style and
budget (the demo's default: ``engine.answer_budget(style)``), and the own-caption box and the Caption button must
show ``VictEngine.caption``. Bad input shows an error message, not an answer. Fixtures: ``conftest.py``.

``VICT_SCREENSHOT=1`` saves the page after the own-caption answer to ``docs/demo.png``;
``VICT_DEMO_CHECKPOINT=DIR`` runs the tier on a trained checkpoint instead of the tiny untrained one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from vict.inference import Context

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

QUESTION = "what color is the circle?"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo.png"
MODES = [
    # (context kind, radio label, answer style, style label)
    ("none", "none", "short", "short (a word or a number)"),
    ("caption", "a caption I type", "short", "short (a word or a number)"),
    ("qa", "a question-answer pair I type", "sentence", "a sentence"),
    ("self", "the model's own caption", "short", "short (a word or a number)"),
]
TYPED_CAPTION = "a large red circle in the top left and a small blue square in the bottom right."
TYPED_QA = ("what color is the square?", "blue")


def upload(page, path: Path | None) -> None:
    """Replace the image of the demo by ``path`` (``None``: just remove it)."""
    remove = page.locator("#vict-image button[aria-label='Remove Image']")
    if remove.count():
        remove.click()
        remove.wait_for(state="detached")
    if path is not None:
        page.locator("#vict-image input[type=file]").set_input_files(str(path))
        page.locator("#vict-image img").wait_for()
    # a new image clears the answer and the own caption (the demo's image.change)
    page.wait_for_function("() => document.querySelector('#vict-answer textarea').value === ''")


def fill(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id}").get_by_role("textbox").fill(text)


def choose(page, elem_id: str, label: str) -> None:
    page.locator(f"#{elem_id}").get_by_text(label, exact=True).click()


def value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").get_by_role("textbox").input_value()


# The output's status tracker: class ``hide`` when idle, an ``.error`` badge after a failure, otherwise busy (queued or
# streaming). ``WATCH`` records when it has been busy since, and the texts it showed meanwhile; ``SETTLED`` is true
# once it has been busy and is idle or failed.
WATCH = """id => {
    if (window.__victObserver) window.__victObserver.disconnect();
    const el = document.getElementById(id);
    window.__vict = {started: false, texts: []};
    window.__victObserver = new MutationObserver(() => {
        const t = el.querySelector('[data-testid=status-tracker]');
        if (t && !t.classList.contains('hide') && !t.querySelector('.error')) window.__vict.started = true;
        const box = el.querySelector('textarea');
        const texts = window.__vict.texts;
        if (window.__vict.started && box && texts[texts.length - 1] !== box.value) texts.push(box.value);
    });
    window.__victObserver.observe(el, {attributes: true, childList: true, subtree: true});
}"""
SETTLED = """id => {
    const t = document.getElementById(id).querySelector('[data-testid=status-tracker]');
    return window.__vict.started && (!t || t.classList.contains('hide') || t.querySelector('.error') !== null);
}"""


def press_and_wait(page, button_id: str, output_id: str) -> tuple[str, list[str]]:
    """Click ``button_id``, wait until ``output_id``'s run has started and ended; its final text and the texts it
    showed on the way (a streamed answer's growing prefixes)."""
    page.evaluate(WATCH, output_id)
    page.locator(f"#{button_id}").click()
    page.wait_for_function(SETTLED, arg=output_id)
    return value(page, output_id), page.evaluate("window.__vict.texts")


def toast_texts(page) -> list[str]:
    return page.locator("[data-testid=toast-text]").all_inner_texts()


def close_toasts(page) -> None:
    for button in page.locator("[data-testid=toast-close]").all():
        button.click()


def expected(reference, scene: Path, kind: str, style: str):
    context = {
        "none": Context.none(),
        "caption": Context.given_caption(TYPED_CAPTION),
        "qa": Context.given_qa(*TYPED_QA),
        "self": Context.own_caption(),
    }[kind]
    image = Image.open(scene).convert("RGB")
    return reference.answer([image], [QUESTION], context, style, max_new_tokens=reference.answer_budget(style))[0]


@pytest.mark.parametrize(("kind", "label", "style", "style_label"), MODES, ids=[m[0] for m in MODES])
def test_each_context_answers_like_the_engine(page, reference, scene: Path, kind, label, style, style_label) -> None:
    upload(page, scene)
    choose(page, "vict-context", label)
    choose(page, "vict-style", style_label)
    if kind == "caption":
        fill(page, "vict-caption-input", TYPED_CAPTION)
    elif kind == "qa":
        fill(page, "vict-qa-question", TYPED_QA[0])
        fill(page, "vict-qa-answer", TYPED_QA[1])
    fill(page, "vict-question", QUESTION)

    shown, seen = press_and_wait(page, "vict-ask", "vict-answer")

    want = expected(reference, scene, kind, style)
    assert shown == want.answer, f"{kind}: the page shows {shown!r}, the engine answers {want.answer!r}"
    assert shown, "an empty answer proves nothing about the page; use a checkpoint that says something"
    assert all(shown.startswith(text) for text in seen), f"the answer did not grow by appending: {seen}"
    if style == "sentence":  # the longest answer: its growth is seen on the page
        assert any(0 < len(text) < len(shown) for text in seen), f"no partial answer was shown: {seen}"
    assert not toast_texts(page)
    if kind == "self":
        assert value(page, "vict-own-caption") == want.caption
        if os.environ.get("VICT_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))


def test_caption_button_shows_the_engines_caption(page, reference, scene: Path, examples: list[Path]) -> None:
    upload(page, scene)
    shown, _ = press_and_wait(page, "vict-caption-button", "vict-own-caption")
    assert shown == reference.caption([Image.open(scene).convert("RGB")])[0]
    # an example image, clicked, is the image the model sees
    upload(page, None)
    page.locator("#vict-examples").get_by_role("button").nth(1).click()
    page.locator("#vict-image img").wait_for()
    page.wait_for_function("() => document.querySelector('#vict-own-caption textarea').value === ''")
    shown, _ = press_and_wait(page, "vict-caption-button", "vict-own-caption")
    assert shown == reference.caption([Image.open(examples[1]).convert("RGB")])[0]
    assert not toast_texts(page)


def test_bad_input_shows_an_error_not_an_answer(page, scene: Path) -> None:
    def blank_question() -> None:
        fill(page, "vict-question", "   ")

    def blank_caption() -> None:
        fill(page, "vict-question", QUESTION)
        choose(page, "vict-context", "a caption I type")
        fill(page, "vict-caption-input", "")

    def no_image() -> None:
        choose(page, "vict-context", "none")
        upload(page, None)

    upload(page, scene)
    choose(page, "vict-context", "none")
    for setup, message in [
        (blank_question, "Type a question about the image"),
        (blank_caption, "Type a caption of the image"),
        (no_image, "Upload an image first"),
    ]:
        close_toasts(page)
        setup()
        page.evaluate(WATCH, "vict-answer")
        page.locator("#vict-ask").click()
        page.locator("[data-testid=toast-text]", has_text=message).wait_for()
        page.wait_for_function(SETTLED, arg="vict-answer")
        assert value(page, "vict-answer") == "", message
        assert all("Traceback" not in text for text in toast_texts(page))
    close_toasts(page)
