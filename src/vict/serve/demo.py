"""The Gradio web demo of a checkpoint: an image, a question, a context; the answer streams in.

Data flow: the browser sends an image (uploaded, or one of the examples), a question, a context choice with the text
it needs, an answer style and decoding settings. ``ask`` turns them into a ``vict.inference.Context`` and a
``Decoding`` (``make_context``, ``make_decoding``: bad input raises ``gr.Error``, shown as a message, never a
traceback) and hands them to the same ``Batcher`` as the HTTP server (``vict.serve.batcher.events``), whose one
thread owns the engine: concurrent visitors are batched together, and the context modes are the inference layer's,
not a copy. The ``("delta", text)`` events stream into the answer box (``ask`` yields the text so far); the
``("caption", text)`` event of an own-caption question fills the own-caption box. The Caption button submits an
own-caption job too and stops it once its caption arrives (``own_caption``), so the engine is only ever used by the
batcher's thread and the caption is the one later own-caption questions reuse.

Uploaded images get a content key (``content_keyed``: a digest of their pixels), so that asking about the same image
again reuses the engine's cached features, prefix and caption.
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from vict.inference.context import Context
from vict.inference.decoding import Decoding
from vict.models.feature_cache import CONTENT_KEY
from vict.serve.batcher import Batcher, QueueFull, ShuttingDown, events

CONTEXT_CHOICES: list[tuple[str, str]] = [
    ("none", "none"),
    ("a caption I type", "caption"),
    ("a question-answer pair I type", "qa"),
    ("the model's own caption", "self"),
]
"""The context selector: (label shown, ``Context`` kind)."""
STYLES: list[tuple[str, str]] = [("short (a word or a number)", "short"), ("a sentence", "sentence")]
MAX_TOKENS_LIMIT = 128
"""The top of the max-tokens slider."""
MAX_FILE_SIZE = "20mb"
"""The largest upload the page accepts."""
TIMEOUT_S = 600.0
"""How long a handler waits for the batcher's next event before giving up."""
CAPTION_QUESTION = "what is in the image?"
"""The question of the job the Caption button submits (cancelled once the caption arrives; never answered)."""
THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
"""Local fonts only: the demo page loads nothing from the internet."""
CSS = """
#vict-image img { width: 100%; height: 100%; object-fit: contain; }
#vict-image img, #vict-examples img { image-rendering: pixelated; }
"""
"""Small images (the miniature world's are 64 px) fill the image box, with sharp pixels."""


def _error(message: str) -> Exception:
    import gradio as gr

    return gr.Error(message, print_exception=False)


def content_keyed(image: Image.Image) -> Image.Image:
    """``image`` in RGB with ``info[CONTENT_KEY]`` set to a sha256 of its size and pixels, so that the engine's
    caches (features, prefix, own caption) recognise the same picture uploaded again."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb is image:
        rgb = image.copy()  # the caller's image keeps its info
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()
    rgb.info[CONTENT_KEY] = f"sha256:{digest}"
    return rgb


def make_context(kind: str, caption: str | None, qa_question: str | None, qa_answer: str | None) -> Context:
    """The ``Context`` of the selector's ``kind`` with the typed text it needs (``gr.Error`` naming what is missing)."""
    if kind == "none":
        return Context.none()
    if kind == "self":
        return Context.own_caption()
    if kind == "caption":
        if not (caption or "").strip():
            raise _error("Type a caption of the image for the 'a caption I type' context (or choose another context).")
        return Context.given_caption(caption or "")
    if kind == "qa":
        if not (qa_question or "").strip() or not (qa_answer or "").strip():
            raise _error(
                "Type both a question and its answer for the 'a question-answer pair I type' context "
                "(or choose another context)."
            )
        return Context.given_qa(qa_question or "", qa_answer or "")
    raise _error(f"Unknown context {kind!r}: choose one of {[label for label, _ in CONTEXT_CHOICES]}.")


def make_decoding(max_tokens: float | None, temperature: float | None) -> Decoding:
    """The ``Decoding`` of the sliders (``gr.Error`` when out of range)."""
    try:
        return Decoding(max_new_tokens=int(max_tokens or 0), temperature=float(temperature or 0.0))
    except ValueError as err:
        raise _error(f"Bad decoding settings: {err}") from err


def _check_image(image: Image.Image | None) -> Image.Image:
    if image is None:
        raise _error("Upload an image first (or click one of the examples).")
    return content_keyed(image)


def _events(batcher: Batcher, image: Image.Image, question: str, context: Context, decoding: Decoding, style: str):
    """The batcher's events of one question; queue and model failures become ``gr.Error``."""
    stream = events(batcher, image, question, context, decoding, style, timeout=TIMEOUT_S)
    try:
        for kind, value in stream:
            if kind == "error":
                raise _error(f"The model failed on this question: {value}")
            yield kind, value
    except (QueueFull, ShuttingDown) as err:
        raise _error(f"The demo is busy: {err}") from err
    except queue.Empty as err:
        raise _error(f"No answer after {TIMEOUT_S:.0f} s; try again later.") from err
    finally:
        stream.close()  # a visitor who left (or an early stop) cancels the job


def ask(
    batcher: Batcher,
    image: Image.Image | None,
    question: str | None,
    kind: str,
    caption: str | None,
    qa_question: str | None,
    qa_answer: str | None,
    style: str,
    max_tokens: float | None,
    temperature: float | None,
) -> Iterator[tuple[Any, str]]:
    """Answer ``question`` about ``image`` in the chosen context; yields ``(own caption, answer so far)``.

    The own caption is ``gr.skip()`` (left as it is) unless the context is the model's own caption; the answer grows
    with each delta, and the last value is the batcher's final text."""
    import gradio as gr

    image = _check_image(image)
    question = (question or "").strip()
    if not question:
        raise _error("Type a question about the image, e.g. 'what color is the circle?'.")
    context = make_context(kind, caption, qa_question, qa_answer)
    decoding = make_decoding(max_tokens, temperature)
    own: Any = gr.skip()
    answer = ""
    yield own, answer
    for event, value in _events(batcher, image, question, context, decoding, style):
        if event == "caption":
            own = value
            yield own, answer
        elif event == "delta":
            answer += value
            yield own, answer
        elif event == "done":
            yield own, value.text


def own_caption(batcher: Batcher, image: Image.Image | None) -> str:
    """The model's own caption of ``image`` (the one own-caption questions use), made by the batcher's thread."""
    image = _check_image(image)
    decoding = Decoding(max_new_tokens=1)
    stream = _events(batcher, image, CAPTION_QUESTION, Context.own_caption(), decoding, "short")
    try:
        for event, value in stream:
            if event == "caption":
                return value
    finally:
        stream.close()  # cancels the answer the caption came with
    raise _error("The model gave no caption.")


def build_demo(engine: Any, batcher: Batcher, examples: Sequence[Path]) -> Any:
    """The demo's ``gradio.Blocks`` (not launched); questions go through ``batcher``, which owns ``engine``.

    ``engine`` is only read for the default answer budgets (``engine.answer_budget``)."""
    import gradio as gr

    budgets = {style: int(engine.answer_budget(style)) for _, style in STYLES}
    with gr.Blocks(title="VICT demo", analytics_enabled=False) as demo:
        gr.Markdown(
            "## VICT: ask a vision-language model about an image\n"
            "Upload an image (or click an example), ask a question, and choose what the model sees with it."
        )
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="pil", image_mode="RGB", label="image", elem_id="vict-image", height=320)
                if examples:
                    gr.Examples(
                        examples=[[str(p)] for p in examples],
                        inputs=[image],
                        label="examples",
                        elem_id="vict-examples",
                    )
            with gr.Column(scale=1):
                question = gr.Textbox(
                    label="question", placeholder="what color is the circle?", elem_id="vict-question"
                )
                context = gr.Radio(CONTEXT_CHOICES, value="none", label="context", elem_id="vict-context")
                typed_caption = gr.Textbox(
                    label="your caption of the image",
                    placeholder="a red circle and a blue square",
                    visible=False,
                    elem_id="vict-caption-input",
                )
                with gr.Row(visible=False) as qa_row:
                    qa_question = gr.Textbox(
                        label="context question", placeholder="what color is the square?", elem_id="vict-qa-question"
                    )
                    qa_answer = gr.Textbox(label="its answer", placeholder="blue", elem_id="vict-qa-answer")
                style = gr.Radio(STYLES, value="short", label="answer style", elem_id="vict-style")
                with gr.Accordion("decoding", open=False):
                    max_tokens = gr.Slider(
                        1,
                        MAX_TOKENS_LIMIT,
                        value=budgets["short"],
                        step=1,
                        label="max new tokens",
                        elem_id="vict-max-tokens",
                    )
                    temperature = gr.Slider(
                        0.0, 2.0, value=0.0, step=0.05, label="temperature (0 = greedy)", elem_id="vict-temperature"
                    )
                with gr.Row():
                    ask_button = gr.Button("Ask", variant="primary", elem_id="vict-ask")
                    caption_button = gr.Button("Caption", elem_id="vict-caption-button")
                own = gr.Textbox(
                    label="the model's own caption", interactive=False, elem_id="vict-own-caption", lines=2
                )
                answer = gr.Textbox(label="answer", interactive=False, elem_id="vict-answer", lines=3)

        def show_context_inputs(kind: str):
            return gr.update(visible=kind == "caption"), gr.update(visible=kind == "qa")

        def on_ask(*args: Any):
            yield from ask(batcher, *args)

        def on_caption(picture: Image.Image | None) -> str:
            return own_caption(batcher, picture)

        quiet = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
        context.change(show_context_inputs, context, [typed_caption, qa_row], **quiet)
        style.change(lambda s: budgets[s], style, max_tokens, **quiet)
        # A new image: the old texts are stale. Cleared in the browser, so no request can land after an answer.
        image.change(None, None, [own, answer], js="() => ['', '']", **quiet)
        inputs = [image, question, context, typed_caption, qa_question, qa_answer, style, max_tokens, temperature]
        # Unlimited concurrency: every visitor's question reaches the batcher, which batches them (or says busy).
        ask_button.click(on_ask, inputs, [own, answer], api_name="ask", concurrency_limit=None)
        question.submit(on_ask, inputs, [own, answer], api_visibility="private", concurrency_limit=None)
        caption_button.click(on_caption, image, own, api_name="caption", concurrency_limit=None)
    return demo


def launch(
    demo: Any,
    host: str,
    port: int,
    examples: Sequence[Path] = (),
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> tuple[Any, str, str]:
    """Serve ``demo`` on ``host``:``port`` (queued, local fonts, no share link); blocks until Ctrl-C unless
    ``prevent_thread_lock``. Returns gradio's ``(app, local url, share url)``."""
    import gradio as gr

    return demo.queue().launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        theme=gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"]),
        css=CSS,
        allowed_paths=sorted({str(Path(p).parent) for p in examples}),
        max_file_size=MAX_FILE_SIZE,
    )
