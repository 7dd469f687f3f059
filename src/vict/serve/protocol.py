"""The OpenAI chat-completions request, read strictly into what the inference layer takes.

``parse_chat_request(body, ...)`` returns a ``ChatRequest`` (the image reference, the question, one ``Context``, the
answer style and one ``Decoding``) or raises ``RequestError`` naming the field (``param``) and the fix. Unknown
fields are refused, as OpenAI refuses them, so a typo never passes silently.

Conversations (at most one image per conversation; the model answers about one image, or text only):

- the last message is the user's question (its text parts, joined by a space); the image is the one
  ``image_url`` part among the user messages (more than one is a 400); a conversation without one is a text-only
  question (the engine's text-only row: the prompt's image marker becomes ``Image: N/A``, as LaVIN's mixed-modality
  training writes text-only samples), in any context but ``self`` (no image to caption: a 400);
- earlier turns become context the way the prompt templates define it: without a ``vict.context``, the latest
  earlier user question with the assistant's answer after it is a given question-answer pair (VICT's ``qa``
  context, the ``qa_qa`` template); with a ``vict.context``, that context is used and earlier turns are not
  (the response's ``vict.context`` says which was used);
- ``system`` / ``developer`` messages are accepted and not used: the templates were trained without one.

The extension ``vict`` (what plain OpenAI clients send through ``extra_body``): ``{"context": "none" | "caption" |
"qa" | "self", "caption": "...", "qa": {"question": "...", "answer": "..."}, "style": "short" | "sentence"}``.

Decoding: ``temperature`` 0 (the default here: answers are ``vict ask``'s) is greedy; ``top_p`` in (0, 1];
``seed`` makes a sampled answer reproducible, whatever else is batched with it; ``stop``: up to 4 strings;
``max_tokens`` (or ``max_completion_tokens``) defaults to the style's budget (``vict ask``'s) and is bounded by the
server's ``--max-tokens``; ``n`` must be 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vict.inference.context import CONTEXT_KINDS, Context
from vict.inference.decoding import Decoding
from vict.serve.errors import RequestError

STYLES = ("short", "sentence")
KNOWN = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "stream",
    "stream_options",
    "vict",
    "user",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "metadata",
    "store",
}
ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions request, read. ``context_from``: ``request`` (``vict.context``), ``history`` (an
    earlier turn) or ``none``."""

    model: str
    image_url: str | None
    """``None``: a text-only question."""
    image_param: str | None
    question: str
    context: Context
    context_from: str
    style: str
    decoding: Decoding
    stream: bool = False
    include_usage: bool = False


def _number(body: dict, key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{key} must be a number, got {type(value).__name__}", param=key, code="invalid_type")
    if value > high or value < low or (low_open and value == low):
        span = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise RequestError(f"{key}={value} is out of range: it must be in {span}", param=key, code="invalid_value")
    return float(value)


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{key} must be an integer, got {type(value).__name__}", param=key, code="invalid_type")
    return value


def _string(value: Any, param: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{what} must be a non-empty string", param=param, code="invalid_value")
    return value


def _parts(message: dict, i: int) -> tuple[list[str], list[tuple[str, str]]]:
    """The text parts and the ``(url, param)`` of the image parts of message ``i``."""
    content, where = message.get("content"), f"messages[{i}].content"
    if isinstance(content, str):
        return [content], []
    if not isinstance(content, list):
        raise RequestError(
            f"{where} must be a string or a list of content parts, got {type(content).__name__}",
            param=where,
            code="invalid_type",
        )
    texts, images = [], []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise RequestError(f"{here} must be an object with a 'type'", param=here, code="invalid_type")
        if part["type"] == "text":
            texts.append(_string(part.get("text"), f"{here}.text", f"{here}.text"))
        elif part["type"] == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            images.append((_string(url, f"{here}.image_url.url", "image_url.url"), f"{here}.image_url.url"))
        else:
            raise RequestError(
                f"{here}: content part type {part['type']!r} is not supported: use 'text' and 'image_url'",
                param=f"{here}.type",
                code="unsupported_content",
            )
    return texts, images


def _context(ext: Any) -> tuple[Context | None, str]:
    """The ``vict`` extension: its ``Context`` (``None`` when it names none) and the answer style."""
    if ext is None:
        return None, "short"
    if not isinstance(ext, dict):
        raise RequestError("vict must be an object", param="vict", code="invalid_type")
    unknown = sorted(set(ext) - {"context", "caption", "qa", "style"})
    if unknown:
        raise RequestError(
            f"vict has unknown field(s) {unknown}: use context, caption, qa, style", param=f"vict.{unknown[0]}"
        )
    style = ext.get("style", "short")
    if style not in STYLES:
        raise RequestError(f"vict.style={style!r}: use one of {list(STYLES)}", param="vict.style")
    kind = ext.get("context")
    if kind is None:
        if "caption" in ext or "qa" in ext:
            raise RequestError("vict.caption / vict.qa need vict.context ('caption' or 'qa')", param="vict.context")
        return None, style
    if kind not in CONTEXT_KINDS:
        raise RequestError(f"vict.context={kind!r}: use one of {list(CONTEXT_KINDS)}", param="vict.context")
    if kind != "caption" and "caption" in ext:
        raise RequestError(
            f"vict.caption is only read with vict.context='caption', not {kind!r}", param="vict.caption"
        )
    if kind != "qa" and "qa" in ext:
        raise RequestError(f"vict.qa is only read with vict.context='qa', not {kind!r}", param="vict.qa")
    if kind == "caption":
        return Context.given_caption(_string(ext.get("caption"), "vict.caption", "vict.caption")), style
    if kind == "qa":
        pair = ext.get("qa")
        if not isinstance(pair, dict) or set(pair) != {"question", "answer"}:
            raise RequestError(
                'vict.qa must be {"question": "...", "answer": "..."}', param="vict.qa", code="invalid_value"
            )
        q = _string(pair["question"], "vict.qa.question", "vict.qa.question")
        a = _string(pair["answer"], "vict.qa.answer", "vict.qa.answer")
        return Context.given_qa(q, a), style
    return (Context.own_caption() if kind == "self" else Context.none()), style


def _decoding(body: dict, default_budget: int, max_tokens: int) -> Decoding:
    budget_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    budget = body.get(budget_key)
    if budget is None:
        budget = min(default_budget, max_tokens)
    budget = _integer(budget, budget_key)
    if budget < 1 or budget > max_tokens:
        raise RequestError(
            f"{budget_key}={budget}: must be between 1 and {max_tokens} (the server's --max-tokens)",
            param=budget_key,
            code="invalid_value",
        )
    stop = body.get("stop")
    stops: tuple[str, ...] = ()
    if isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list):
        stops = tuple(stop)
    elif stop is not None:
        raise RequestError("stop must be a string or a list of up to 4 strings", param="stop", code="invalid_type")
    if len(stops) > 4 or any(not isinstance(s, str) or not s for s in stops):
        raise RequestError("stop must be a string or a list of up to 4 non-empty strings", param="stop")
    seed = body.get("seed")
    if seed is not None:
        seed = _integer(seed, "seed")
        if not 0 <= seed < 2**63:
            raise RequestError(f"seed={seed}: must be in [0, 2**63)", param="seed", code="invalid_value")
    return Decoding(
        max_new_tokens=budget,
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        seed=seed,
        stop=stops,
    )


def parse_chat_request(body: Any, model_name: str, budgets: dict[str, int], max_tokens: int) -> ChatRequest:
    """Read a chat-completions request (module docstring). ``budgets``: the default answer budget per style."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_type")
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise RequestError(f"unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model is required: the name GET /v1/models lists", param="model", code="invalid_type")
    if model != model_name:
        raise RequestError(
            f"the model {model!r} does not exist on this server: it serves {model_name!r}",
            status=404,
            param="model",
            code="model_not_found",
        )
    n = body.get("n")
    if n is not None and _integer(n, "n") != 1:
        raise RequestError(f"n={n}: this server returns one choice per request (n=1)", param="n")
    for key in ("frequency_penalty", "presence_penalty"):
        if body.get(key) not in (None, 0, 0.0) or isinstance(body.get(key), bool):
            raise RequestError(f"{key} is not supported (only 0)", param=key, code="unsupported_parameter")
    if body.get("logprobs") not in (None, False):
        raise RequestError("logprobs is not supported", param="logprobs", code="unsupported_parameter")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError("stream must be a boolean", param="stream", code="invalid_type")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise RequestError(
                'stream_options must be {"include_usage": true|false}', param="stream_options", code="invalid_type"
            )
        if not stream:
            raise RequestError("stream_options is only allowed with stream=true", param="stream_options")
        include_usage = bool(options.get("include_usage", False))

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages", code="invalid_type")
    turns: list[tuple[str, str]] = []
    images: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(f"messages[{i}] must be an object", param=f"messages[{i}]", code="invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"messages[{i}].role={role!r}: use one of {list(ROLES)}", param=f"messages[{i}].role")
        texts, found = _parts(message, i)
        if found and role != "user":
            raise RequestError(f"messages[{i}]: only user messages may hold images", param=f"messages[{i}].content")
        images += found
        turns.append((role, " ".join(" ".join(t.split()) for t in texts).strip()))
    if turns[-1][0] != "user":
        raise RequestError("the last message must be the user's question", param=f"messages[{len(messages) - 1}].role")
    question = turns[-1][1]
    if not question:
        raise RequestError(
            "the last user message has no text: ask a question about the image",
            param=f"messages[{len(messages) - 1}].content",
            code="empty_question",
        )
    if len(images) > 1:
        raise RequestError(
            f"{len(images)} images in the conversation: this model answers about one image per conversation",
            param=images[1][1],
            code="too_many_images",
        )
    context, style = _context(body.get("vict"))
    if not images and context is not None and context.kind == "self":
        raise RequestError(
            "vict.context 'self' captions the image, and the conversation has none: add a content part "
            '{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}} to a user message, or use '
            "another context",
            param="messages",
            code="missing_image",
        )
    context_from = "request" if context is not None else "none"
    if context is None:
        context = Context.none()
        dialogue = [(r, t) for r, t in turns[:-1] if r in ("user", "assistant")]
        for (r1, q), (r2, a) in zip(reversed(dialogue[:-1]), reversed(dialogue[1:])):
            if r1 == "user" and r2 == "assistant" and q and a:
                context, context_from = Context.given_qa(q, a), "history"
                break
    return ChatRequest(
        model=model,
        image_url=images[0][0] if images else None,
        image_param=images[0][1] if images else None,
        question=question,
        context=context,
        context_from=context_from,
        style=style,
        decoding=_decoding(body, budgets[style], max_tokens),
        stream=stream,
        include_usage=include_usage,
    )
