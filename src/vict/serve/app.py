"""The HTTP face of a checkpoint: an OpenAI-compatible ``/v1/chat/completions`` on FastAPI.

Data flow of one request: the body (bounded by ``max_body_bytes`` while it is read) -> JSON -> ``ChatRequest``
(``vict.serve.protocol``; every refusal a ``RequestError`` in OpenAI's error shape) -> the image
(``vict.serve.images``: a data URL, or a path under ``--image-root``; bounded bytes and pixels) -> the prompt-length
check (the prompt the engine will build, counted with a private copy of the collator) -> a ``Job`` in the
``Batcher``'s bounded queue (full: 429 with ``Retry-After``) -> events back from the decoding thread -> one JSON
response, or server-sent ``chat.completion.chunk`` events ending with ``data: [DONE]``. A client that disconnects
cancels its job: out of the queue if it waits, its row ended at the next token if it runs.

``usage``: ``prompt_tokens`` counts the answer prompt as the LLM reads it (its text tokens, the image's visual
tokens and, in ``self`` mode, the model's own caption); ``completion_tokens`` the answer's tokens (end of text not
counted). The response's ``vict`` object says which context was used (and where it came from: the request, an
earlier turn, or none), whether the question came with an image (``image``: ``false`` for a text-only question, which
the engine answers as its text-only rows) and, in ``self`` mode, the model's own caption.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vict.data.mixing import text_only_prompt
from vict.inference.context import EMPTY_CAPTION
from vict.serve.batcher import Batcher, Job, QueueFull, ShuttingDown
from vict.serve.errors import RequestError, error_body
from vict.serve.images import ImageLimits, load_image_url
from vict.serve.protocol import ChatRequest, parse_chat_request

DISCONNECT_POLL_S = 0.2


@dataclass
class ServeSettings:
    """What ``vict serve`` was started with (the CLI's flags; safe defaults)."""

    model_name: str = "vict"
    image_root: Path | None = None
    api_key: str | None = None
    limits: ImageLimits = field(default_factory=ImageLimits)
    max_body_bytes: int = 16 * 1024 * 1024
    max_tokens: int = 256
    max_prompt_tokens: int | None = None
    max_batch_size: int = 8
    max_wait_s: float = 0.01
    max_queue: int = 64


class PromptCounter:
    """Counts a request's prompt tokens before it is queued, with its own copy of the engine's collator (the
    decoding thread's tokenizer is never shared)."""

    def __init__(self, engine: Any) -> None:
        self.builder = engine.builder
        self.collator = copy.deepcopy(engine.collator)
        self.collator.max_length = 1 << 30  # count the whole prompt: the engine's collator would truncate it
        self.caption_budget = engine._budget("caption", None)
        self._lock = threading.Lock()

    def count(self, request: ChatRequest) -> int:
        """The answer prompt's length; in ``self`` mode the own caption is counted at its full budget."""
        own = EMPTY_CAPTION if request.context.kind == "self" else None
        prompt = request.context.prompt(self.builder, request.question, request.style, own)
        text_only = request.image_url is None
        if text_only:
            prompt = text_only_prompt(prompt)
        with self._lock:  # no pixels made: the rows' kind is all the count needs
            mask = self.collator.encode_prompts([prompt], images=[None] if text_only else None)["attention_mask"]
        extra = self.caption_budget if request.context.kind == "self" else 0
        return int(mask.sum()) + extra


def model_name_of(checkpoint: Path) -> str:
    """The served model's default name: the checkpoint folder (its parent's name for ``final`` / ``step-N``)."""
    checkpoint = checkpoint.resolve()
    name = checkpoint.name
    if name == "final" or name.startswith("step-"):
        parent = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        name = f"{parent.name}/{name}"
    return name


def create_app(engine: Any, settings: ServeSettings, batcher: Batcher | None = None) -> FastAPI:
    """The FastAPI app serving ``engine`` (already loaded). Its batcher starts and stops with the app."""
    batcher = batcher or Batcher(engine, settings.max_batch_size, settings.max_wait_s, settings.max_queue)
    counter = PromptCounter(engine)
    max_prompt = settings.max_prompt_tokens or int(engine.collator.max_length)
    budgets = {style: engine.answer_budget(style) for style in ("short", "sentence")}
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await run_in_threadpool(batcher.stop)

    app = FastAPI(title="vict", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.engine, app.state.settings = batcher, engine, settings

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.method} {request.url.path}", 405: "method not allowed"}.get(
            err.status_code, str(err.detail)
        )
        return JSONResponse(error_body(message, err.status_code), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"internal error: {type(err).__name__}: {err}", 500), status_code=500)

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), settings.api_key):
            raise RequestError(
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key the server was "
                "started with",
                status=401,
                code="invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": settings.model_name,
            "waiting": batcher.waiting,
            "running": batcher.busy,
            "answered": batcher.answered,
            "batches": batcher.batches,
            "rejected": batcher.rejected,
            "cancelled": batcher.cancelled,
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {
            "object": "list",
            "data": [{"id": settings.model_name, "object": "model", "created": created, "owned_by": "vict"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        authorize(request)
        body = await read_json(request, settings.max_body_bytes)
        chat_request = parse_chat_request(body, settings.model_name, budgets, settings.max_tokens)
        if chat_request.image_url is None:  # a text-only question
            if not getattr(engine, "supports_text_only", False):
                raise RequestError(
                    'this model answers questions about an image only: add a content part {"type": "image_url", '
                    '"image_url": {"url": "data:image/png;base64,..."}} to a user message',
                    param="messages",
                    code="missing_image",
                )
            image = None
        else:
            image = await run_in_threadpool(
                load_image_url, chat_request.image_url, chat_request.image_param, settings.limits, settings.image_root
            )
        n_prompt = await run_in_threadpool(counter.count, chat_request)
        if n_prompt > max_prompt:
            raise RequestError(
                f"the prompt is {n_prompt} tokens (with the image's and, in 'self' mode, the caption's), over the "
                f"server's limit of {max_prompt}: shorten the question or the context",
                param="messages",
                code="context_length_exceeded",
            )
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        job = Job(
            image,
            chat_request.question,
            chat_request.context,
            chat_request.decoding,
            lambda event: loop.call_soon_threadsafe(inbox.put_nowait, event),
            style=chat_request.style,
            deltas=chat_request.stream,
        )
        try:
            batcher.submit(job)
        except QueueFull as err:
            raise RequestError(
                str(err), status=429, code="queue_full", headers={"Retry-After": str(err.retry_after)}
            ) from err
        except ShuttingDown as err:
            raise RequestError(str(err), status=503, code="shutting_down") from err
        meta = Reply(chat_request, settings.model_name)
        if chat_request.stream:
            return StreamingResponse(
                stream(meta, inbox, job, batcher),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await answer(meta, inbox, job, batcher, request)

    return app


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, read at most ``limit`` bytes (413 beyond, before reading on when the length is declared)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            f"the request body is {declared} bytes, over the server's --max-body-bytes {limit}",
            status=413,
            code="body_too_large",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(
                f"the request body is over the server's --max-body-bytes {limit}", status=413, code="body_too_large"
            )
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"the request body is not valid JSON: {err}", code="invalid_json") from err


class Reply:
    """What every response of one request shares: its id, time, model and ``vict`` object."""

    def __init__(self, request: ChatRequest, model: str) -> None:
        self.request, self.model = request, model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.caption: str | None = None

    def vict(self) -> dict[str, Any]:
        context = self.request.context
        out: dict[str, Any] = {
            "context": context.kind,
            "context_from": self.request.context_from,
            "image": self.request.image_url is not None,
        }
        if context.kind == "qa" and context.qa:
            out["qa"] = {"question": context.qa[0], "answer": context.qa[1]}
        if context.kind == "caption":
            out["caption"] = context.caption
        if context.kind == "self":
            out["caption"] = self.caption
        return out

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"


def usage(completion: Any) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def failure(err: Exception) -> RequestError:
    if isinstance(err, ShuttingDown):
        return RequestError(str(err), status=503, code="shutting_down")
    if isinstance(err, ValueError):
        return RequestError(str(err), code="invalid_request")
    return RequestError(f"the model failed on this batch: {type(err).__name__}: {err}", status=500, code="model_error")


async def answer(meta: Reply, inbox: asyncio.Queue, job: Job, batcher: Batcher, request: Request) -> JSONResponse:
    """Wait for the job's ``done`` while watching the client (gone: the job is cancelled); one JSON response."""
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(inbox.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:  # on Python 3.10 not the builtin TimeoutError
                if await request.is_disconnected():
                    batcher.cancel(job)
                    return JSONResponse(error_body("client disconnected", 499), status_code=499)
                continue
            if kind == "caption":
                meta.caption = value
            elif kind == "error":
                raise failure(value)
            elif kind == "done":
                break
    except asyncio.CancelledError:
        batcher.cancel(job)
        raise
    return JSONResponse(
        {
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": value.text},
                    "finish_reason": value.finish_reason,
                }
            ],
            "usage": usage(value),
            "vict": meta.vict(),
        }
    )


async def stream(meta: Reply, inbox: asyncio.Queue, job: Job, batcher: Batcher) -> AsyncIterator[str]:
    """Server-sent ``chat.completion.chunk`` events: the role, the text deltas, the finish (with ``vict``), the usage
    when asked for, ``[DONE]``. The client leaving closes this generator, which cancels the job."""
    finished = False
    try:
        yield meta.chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await inbox.get()
            if kind == "caption":
                meta.caption = value
            elif kind == "delta":
                yield meta.chunk({"content": value})
            elif kind == "error":
                finished = True
                yield f"data: {json.dumps(failure(value).body())}\n\n"
                break
            elif kind == "done":
                finished = True
                yield meta.chunk({}, value.finish_reason, vict=meta.vict())
                if meta.request.include_usage:
                    body = {
                        "id": meta.id,
                        "object": "chat.completion.chunk",
                        "created": meta.created,
                        "model": meta.model,
                        "choices": [],
                        "usage": usage(value),
                    }
                    yield f"data: {json.dumps(body)}\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        if not finished:
            batcher.cancel(job)


class BackgroundServer:
    """``app`` on uvicorn in a thread of this process, on a loopback port (tests, benchmarks, notebooks):
    ``with BackgroundServer(app) as server: server.url``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.host, self.port = host, self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()
