"""The decoding thread (``vict.serve.batcher``): batches of concurrent jobs, each answered as alone; a bounded queue."""

from __future__ import annotations

import threading

import pytest

from vict.inference import Context, Decoding, VictEngine
from vict.serve.batcher import Batcher, Job, QueueFull, ShuttingDown, events

QUESTIONS = ["what color is it?", "how many shapes are there?", "is it red?", "where is it?", "what size is it?"]
CONTEXTS = [
    Context.none(),
    Context.own_caption(),
    Context.given_qa("what shape is it?", "square"),
    Context.given_caption("a red square"),
    Context.own_caption(),
]


@pytest.fixture(scope="module")
def engine() -> VictEngine:
    from vict.models.builders import build_tiny

    return VictEngine(build_tiny("lora", num_extra_queries=4, seed=0).eval())


class Inbox:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.done = threading.Event()

    def __call__(self, event: tuple[str, object]) -> None:
        self.events.append(event)
        if event[0] in ("done", "error"):
            self.done.set()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def result(self):
        return self.events[-1][1]


def test_concurrent_jobs_share_a_batch_and_each_gets_its_answer_alone(engine, images) -> None:
    rows = [images[i % 3] for i in range(5)]
    expected = [engine.answer([im], [q], c, max_new_tokens=6)[0] for im, q, c in zip(rows, QUESTIONS, CONTEXTS)]
    batcher = Batcher(engine, max_batch_size=8, max_wait_s=0.5)
    inboxes = [Inbox() for _ in rows]
    for im, q, c, inbox in zip(rows, QUESTIONS, CONTEXTS, inboxes):
        batcher.submit(Job(im, q, c, Decoding(6), inbox))
    batcher.start()
    try:
        assert all(inbox.done.wait(60) for inbox in inboxes)
    finally:
        batcher.stop()
    assert batcher.batches == 1 and batcher.largest_batch == 5  # one batch for all five
    assert [inbox.result().text for inbox in inboxes] == [a.answer for a in expected]
    for inbox, context, a in zip(inboxes, CONTEXTS, expected):
        captions = [v for k, v in inbox.events if k == "caption"]
        assert captions == ([a.caption] if context.kind == "self" else [])
        assert inbox.kinds()[0] == ("caption" if context.kind == "self" else "delta") and inbox.kinds()[-1] == "done"
        assert "".join(v for k, v in inbox.events if k == "delta") == inbox.result().text


def test_a_full_queue_refuses_and_a_cancelled_job_frees_its_slot(engine, images) -> None:
    batcher = Batcher(engine, max_batch_size=2, max_queue=3)  # not started: jobs wait
    jobs = [Job(images[0], "what is it?", Context.none(), Decoding(4), Inbox()) for _ in range(3)]
    for job in jobs:
        batcher.submit(job)
    extra = Job(images[0], "what is it?", Context.none(), Decoding(4), Inbox())
    with pytest.raises(QueueFull) as full:
        batcher.submit(extra)
    assert full.value.retry_after >= 1 and full.value.waiting == 3 and batcher.rejected == 1
    batcher.cancel(jobs[1])
    assert batcher.waiting == 2 and batcher.cancelled == 1
    batcher.submit(extra)  # the slot is free again
    batcher.stop()
    assert all(job.emit.kinds() == ["error"] for job in (jobs[0], jobs[2], extra))
    assert isinstance(jobs[0].emit.result(), ShuttingDown) and jobs[1].emit.kinds() == []
    with pytest.raises(ShuttingDown):
        batcher.submit(extra)


def test_events_iterates_one_answer_and_a_bad_batch_reports_an_error(engine, images) -> None:
    batcher = Batcher(engine).start()
    try:
        seen = list(events(batcher, images[0], "what color is it?", Context.own_caption(), Decoding(5)))
        alone = engine.answer([images[0]], ["what color is it?"], Context.own_caption(), max_new_tokens=5)[0]
        assert seen[0] == ("caption", alone.caption) and seen[-1][0] == "done" and seen[-1][1].text == alone.answer
        failed = list(events(batcher, images[0], "   ", Context.none(), Decoding(5)))
        assert [k for k, _ in failed] == ["error"] and "empty question" in str(failed[0][1])
        later = list(events(batcher, images[0], "what color is it?", Context.none(), Decoding(5)))
        assert later[-1][0] == "done"  # the worker survived the bad batch
    finally:
        batcher.stop()
