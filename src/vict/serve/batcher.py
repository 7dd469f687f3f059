"""One decoding thread for concurrent requests: a bounded queue, grouped into batches, each row answered as alone.

Data flow: a face (the HTTP server, the Gradio demo) turns a request into a ``Job`` (image, question, ``Context``,
answer style, ``Decoding``, an ``emit`` callback and a cancel flag) and ``submit``s it. One worker thread owns the
engine: it waits for a job, then gathers more for at most ``max_wait_s`` or until ``max_batch_size`` jobs, drops
the ones whose clients left, and runs the batch through the inference layer: ``VictEngine.prompts`` (the ``self``
rows' own captions first, batched and remembered per image) and ``VictEngine.complete_rows`` (each row its own
budget, stop strings, sampling and seed; greedy rows give the text they give alone). Events go back through each
job's ``emit`` as they happen, from the worker thread:

- ``("caption", text)``: the model's own caption (``self`` context), before the answer's first token;
- ``("delta", text)``: the answer's text as it grows (the deltas join to the final text; only to jobs that want
  them, ``Job.deltas``);
- ``("done", Completion)``: the answer (``finish_reason`` ``stop``, ``length`` or ``cancelled``);
- ``("error", exception)``: the batch failed (the worker goes on with the next one).

The queue holds at most ``max_queue`` waiting jobs; ``submit`` beyond that raises ``QueueFull`` with a retry
estimate (the server's 429 with ``Retry-After``) instead of growing. ``cancel(job)`` takes a waiting job out of the
queue at once (its slot is free), or ends a running row at its next token.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vict.inference.context import Context
from vict.inference.decoding import Completion, Decoding

logger = logging.getLogger(__name__)

Event = tuple[str, Any]


class QueueFull(Exception):
    """The queue is full; ``retry_after`` is a whole number of seconds after which a retry may get in."""

    def __init__(self, retry_after: int, waiting: int) -> None:
        super().__init__(f"the server is busy ({waiting} requests waiting); retry in {retry_after} s")
        self.retry_after, self.waiting = retry_after, waiting


class ShuttingDown(Exception):
    """The batcher is stopped: no new jobs."""


@dataclass(eq=False)
class Job:
    """One question to answer. ``emit`` receives the events (module docstring) from the worker thread."""

    image: Image.Image | None
    question: str
    context: Context
    decoding: Decoding
    emit: Callable[[Event], None]
    style: str = "short"
    deltas: bool = True
    """Whether ``emit`` wants the ``delta`` events (a non-streaming reply needs only ``done``)."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)


class Batcher:
    """The decoding thread (module docstring). ``start()`` it; ``stop()`` ends it after the running batch."""

    def __init__(self, engine: Any, max_batch_size: int = 8, max_wait_s: float = 0.01, max_queue: int = 64) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch_size={max_batch_size}, max_queue={max_queue}, max_wait_s={max_wait_s}: the sizes must "
                "be >= 1 and the wait >= 0"
            )
        self.engine = engine
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running: list[Job] = []
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._batch_seconds = 0.5  # running mean of one batch's time, for Retry-After
        self.batches = 0
        self.answered = 0
        self.rejected = 0
        self.cancelled = 0
        """Jobs whose client left: taken out of the queue, or ended mid-answer."""
        self.largest_batch = 0

    # ----------------------------------------------------------------------------------------------- control
    def start(self) -> Batcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="vict-batcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        with self._cond:
            self._stopped = True
            waiting, self._queue = list(self._queue), deque()
            self._cond.notify_all()
        for job in waiting:
            job.emit(("error", ShuttingDown("the server is shutting down")))
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def busy(self) -> int:
        """Jobs in the running batch."""
        return len(self._running)

    def submit(self, job: Job) -> None:
        """Queue ``job`` (``QueueFull`` when ``max_queue`` jobs wait; ``ShuttingDown`` after ``stop``)."""
        with self._cond:
            if self._stopped:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                self.rejected += 1
                rounds = math.ceil((len(self._queue) + 1) / self.max_batch_size) + 1  # the queue and the running batch
                raise QueueFull(max(1, math.ceil(rounds * self._batch_seconds)), len(self._queue))
            self._queue.append(job)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """The client of ``job`` left: out of the queue now, or its row ends at its next token."""
        with self._cond:
            if job.cancelled.is_set():
                return
            job.cancelled.set()
            self.cancelled += 1
            if job in self._queue:
                self._queue.remove(job)

    # ------------------------------------------------------------------------------------------------ worker
    def _take(self) -> list[Job] | None:
        """The next batch: wait for one job, then up to ``max_wait_s`` for more (``None`` once stopped)."""
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while len(self._queue) < self.max_batch_size and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stopped:
                return None
            batch = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
            self._running = [j for j in batch if not j.cancelled.is_set()]
            return self._running

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            start = time.monotonic()
            try:
                self.run(batch)
            except Exception as err:  # one bad batch must not end the server
                logger.exception("a batch of %d failed", len(batch))
                for job in batch:
                    job.emit(("error", err))
            finally:
                self._running = []
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.monotonic() - start)
            self.batches += 1
            self.answered += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))

    def run(self, batch: list[Job]) -> list[Completion]:
        """Answer one batch (in the calling thread), emitting each job's events; returns the completions."""
        engine = self.engine
        images = [job.image for job in batch]
        prompts: list[str] = [""] * len(batch)
        own: list[str | None] = [None] * len(batch)
        for style in dict.fromkeys(job.style for job in batch):
            rows = [i for i, job in enumerate(batch) if job.style == style]
            made, captions = engine.prompts(
                [images[i] for i in rows], [batch[i].question for i in rows], [batch[i].context for i in rows], style
            )
            for i, prompt, caption in zip(rows, made, captions):
                prompts[i], own[i] = prompt, caption
        for job, caption in zip(batch, own):
            if caption is not None:
                job.emit(("caption", caption))

        def on_delta(row: int, text: str) -> None:
            if batch[row].deltas:
                batch[row].emit(("delta", text))

        completions = engine.complete_rows(
            images,
            prompts,
            [job.decoding for job in batch],
            on_delta=on_delta if any(job.deltas for job in batch) else None,
            cancelled=lambda row: batch[row].cancelled.is_set(),
        )
        for job, completion in zip(batch, completions):
            job.emit(("done", completion))
        return completions


def events(
    batcher: Batcher,
    image: Image.Image | None,
    question: str,
    context: Context,
    decoding: Decoding,
    style: str = "short",
    timeout: float | None = None,
) -> Iterator[Event]:
    """Submit one question and yield its events in order until ``done`` or ``error`` (for callers that are not
    asynchronous: the demo). Closing the iterator early cancels the job. ``QueueFull`` and ``ShuttingDown`` are
    raised by the first ``next``."""
    inbox: queue.Queue[Event] = queue.Queue()
    job = Job(image, question, context, decoding, inbox.put, style=style)
    batcher.submit(job)
    finished = False
    try:
        while not finished:
            event = inbox.get(timeout=timeout)
            finished = event[0] in ("done", "error")
            yield event
    finally:
        if not finished:
            batcher.cancel(job)
