"""`vict serve`'s app on a live loopback port, called by the official `openai` client and by raw HTTP.

The model is a tiny random VICT-LoRA checkpoint: its text is nonsense, but deterministic, so every comparison
(the server against `vict ask`, batched against alone, streamed against whole) is exact.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from vict.cli import main
from vict.inference import VictEngine
from vict.serve.app import BackgroundServer, ServeSettings, create_app
from vict.serve.batcher import Batcher

pytestmark = pytest.mark.integration

MODEL = "tiny-vict"
QUESTION = "what color is the square?"
BUDGET = 6


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for k, colour in enumerate([(220, 30, 30), (30, 60, 220), (30, 180, 30)]):
        im = Image.new("RGB", (48, 48), (255, 255, 255))
        im.paste(Image.new("RGB", (12 + 4 * k, 16), colour), (4 + 6 * k, 8 + 4 * k))
        im.save(root / f"scene{k}.png")
    (root.parent / "outside.png").write_bytes((root / "scene0.png").read_bytes())
    return root


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def messages(image: str, question: str = QUESTION) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": question}],
        }
    ]


@pytest.fixture(scope="module")
def server(checkpoint: Path, image_root: Path):
    engine = VictEngine.from_checkpoint(checkpoint, batch_size=16)
    settings = ServeSettings(model_name=MODEL, image_root=image_root, max_body_bytes=256 * 1024, max_batch_size=16)
    with BackgroundServer(create_app(engine, settings)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(checkpoint: Path, image: Path, *flags: str, capsys) -> dict:
    args = ["ask", "--checkpoint", str(checkpoint), "--image", str(image), "--question", QUESTION, "--json"]
    assert main([*args, "--max-new-tokens", str(BUDGET), *flags]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("vict", "flags"),
    [
        (None, []),
        ({"context": "caption", "caption": "a red square on white"}, ["--context-caption", "a red square on white"]),
        (
            {"context": "qa", "qa": {"question": "what shape is it?", "answer": "square"}},
            ["--context-qa", "what shape is it?", "square"],
        ),
        ({"context": "self"}, ["--self-context"]),
    ],
    ids=["none", "caption", "qa", "self"],
)
def test_each_context_mode_answers_as_vict_ask(client, checkpoint, image_root, vict, flags, capsys) -> None:
    image = image_root / "scene0.png"
    extra = {"extra_body": {"vict": vict}} if vict else {}
    reply = client.chat.completions.create(model=MODEL, messages=messages(data_url(image)), max_tokens=BUDGET, **extra)
    expected = ask(checkpoint, image, *flags, capsys=capsys)
    assert reply.choices[0].message.content == expected["answer"] and expected["answer"]
    assert reply.model_extra["vict"]["context"] == (vict or {}).get("context", "none")
    if vict and vict["context"] == "self":
        assert reply.model_extra["vict"]["caption"] == expected["caption"]
    usage = reply.usage
    assert usage.completion_tokens == BUDGET and usage.total_tokens == usage.prompt_tokens + BUDGET
    assert reply.choices[0].finish_reason == "length" and reply.model == MODEL and reply.object == "chat.completion"


def test_a_conversation_without_an_image_is_a_text_only_question_as_vict_ask(
    client, server, checkpoint, capsys
) -> None:
    """No image: the engine's text-only row (``vict ask`` without ``--image``), its tokens counted without image
    slots; batched beside an image question, each answers as alone; 'self' needs the image and is refused."""
    caption = {"context": "caption", "caption": "a red square on white"}
    text_only = [{"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(
        model=MODEL, messages=text_only, max_tokens=BUDGET, extra_body={"vict": caption}
    )
    args = ["ask", "--checkpoint", str(checkpoint), "--question", QUESTION, "--json", "--max-new-tokens", str(BUDGET)]
    assert main([*args, "--context-caption", caption["caption"]]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert reply.choices[0].message.content == expected["answer"] and expected["answer"]
    assert reply.model_extra["vict"]["image"] is False and expected["prompt"].startswith("Image: N/A")
    engine = VictEngine.from_checkpoint(checkpoint)
    ids = engine.collator.encode_prompts([expected["prompt"]], images=[None])["attention_mask"]
    assert reply.usage.prompt_tokens == int(ids.sum())  # no image slots counted
    refused = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": text_only, "vict": {"context": "self"}},
        timeout=60,
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "missing_image"


def test_streaming_sends_the_same_text_in_pieces_then_finish_usage_done(client, server, image_root) -> None:
    url = data_url(image_root / "scene1.png")
    body = {"model": MODEL, "messages": messages(url), "max_tokens": 8, "vict": {"context": "self"}}
    whole = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages(url),
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"vict": {"context": "self"}},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole["choices"][0]["message"]["content"]
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "length"
    assert final[0].model_extra["vict"] == whole["vict"] and whole["vict"]["caption"]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump(exclude_none=True) == whole["usage"]
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream") and lines[-1] == "data: [DONE]"


def test_earlier_turns_are_a_question_answer_context_and_paths_work_under_the_root(client, image_root) -> None:
    history = [
        *messages("scene2.png", "what shape is it?"),
        {"role": "assistant", "content": "square"},
        {"role": "user", "content": QUESTION},
    ]
    turns = client.chat.completions.create(model=MODEL, messages=history, max_tokens=BUDGET)
    given = client.chat.completions.create(
        model=MODEL,
        messages=messages(data_url(image_root / "scene2.png")),
        max_tokens=BUDGET,
        extra_body={"vict": {"context": "qa", "qa": {"question": "what shape is it?", "answer": "square"}}},
    )
    assert turns.choices[0].message.content == given.choices[0].message.content
    assert turns.model_extra["vict"]["context_from"] == "history" and turns.model_extra["vict"]["context"] == "qa"


def test_sampling_is_seeded_and_temperature_zero_is_greedy(client, image_root) -> None:
    msgs = messages(data_url(image_root / "scene0.png"))

    def once(**kw) -> str:
        return (
            client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, **kw).choices[0].message.content
        )

    greedy = once()
    assert once(temperature=0) == greedy
    a, b = once(temperature=1.0, seed=11), once(temperature=1.0, seed=11)
    assert a == b and len({a, once(temperature=1.0, seed=12), greedy}) > 1
    stopped = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, stop=[greedy.split()[1]])
    assert greedy.startswith(stopped.choices[0].message.content) and stopped.choices[0].finish_reason == "stop"


def test_models_and_health(client, server) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL


def _bomb() -> str:
    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_abuse_gets_4xx_with_a_reason_and_the_server_keeps_serving(server, client, image_root) -> None:
    good = data_url(image_root / "scene0.png")
    png = (image_root / "scene0.png").read_bytes()
    post = f"{server.url}/v1/chat/completions"

    def body(**kw) -> dict:
        return {"model": MODEL, "messages": messages(good), **kw}

    cases = [
        (b'{"model": "tiny-vict", "messages": [', 400, "not valid JSON"),
        (body(max_tokens="ten"), 400, "max_tokens must be an integer"),
        (body(messages=[{"role": "user", "content": QUESTION}], vict={"context": "self"}), 400, "captions the image"),
        (body(messages=messages("data:text/plain;base64,aGk=")), 400, "not an image"),
        (
            body(messages=messages("data:image/png;base64," + base64.b64encode(b"GIF89a nonsense").decode())),
            400,
            "not a png",
        ),
        (
            body(messages=messages("data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode())),
            400,
            "truncated",
        ),
        (body(messages=messages(_bomb())), 413, "6000x6000"),
        (body(messages=messages("../outside.png")), 403, "outside the server's image root"),
        (body(messages=messages("http://127.0.0.1:1/x.png")), 400, "not fetched"),
        (body(messages=messages("data:image/png;base64," + "A" * 300_000)), 413, "max-body-bytes"),
        (body(model="gpt-4o"), 404, "does not exist"),
        (body(n=2), 400, "n=1"),
        (body(vict={"context": "caption"}), 400, "vict.caption"),
        (body(messages=messages(good, " " * 3)), 400, "non-empty"),
        (body(messages=messages(good, "why " * 600)), 400, "tokens"),
    ]
    for payload, status, words in cases:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        reply = httpx.post(post, content=raw, headers={"content-type": "application/json"}, timeout=60)
        error = reply.json()["error"]
        assert reply.status_code == status and words in error["message"], (status, error)
        assert set(error) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server.url}/v1/nowhere").status_code == 404
    assert httpx.get(post).status_code == 405
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=messages(good), n=2)
    assert (
        client.chat.completions.create(model=MODEL, messages=messages(good), max_tokens=3).choices[0].message.content
    )
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_api_key_is_required_when_set(checkpoint, image_root) -> None:
    engine = VictEngine.from_checkpoint(checkpoint)
    with BackgroundServer(create_app(engine, ServeSettings(model_name=MODEL, api_key="s3cret"))) as running:
        url = data_url(image_root / "scene0.png")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{running.url}/v1", api_key="wrong", max_retries=0).models.list()
        assert httpx.get(f"{running.url}/v1/models").status_code == 401
        good = openai.OpenAI(base_url=f"{running.url}/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model=MODEL, messages=messages(url), max_tokens=2).choices
        assert httpx.get(f"{running.url}/health").status_code == 200  # health needs no key


def test_sixteen_concurrent_clients_get_their_one_at_a_time_answers(server, client, image_root) -> None:
    contexts = [
        None,
        {"context": "self"},
        {"context": "caption", "caption": "a blue square"},
        {"context": "qa", "qa": {"question": "q?", "answer": "a"}},
    ]
    questions = ["what color is it?", "how many shapes?", "is it big?", "where is it?"]
    jobs = [
        (data_url(image_root / f"scene{i % 3}.png"), questions[i % 4], contexts[(i // 4) % 4], 4 + i % 5)
        for i in range(16)
    ]

    def call(job) -> str:
        url, question, vict, budget = job
        extra = {"extra_body": {"vict": vict}} if vict else {}
        return (
            client.chat.completions.create(model=MODEL, messages=messages(url, question), max_tokens=budget, **extra)
            .choices[0]
            .message.content
        )

    alone = [call(job) for job in jobs]
    before = httpx.get(f"{server.url}/health").json()
    barrier = threading.Barrier(16)

    def together(job) -> str:
        barrier.wait()
        return call(job)

    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(together, jobs))
    after = httpx.get(f"{server.url}/health").json()
    assert concurrent == alone
    assert after["answered"] - before["answered"] == 16 and after["batches"] - before["batches"] < 16  # batched


def test_overload_gets_429s_then_normal_service_and_a_client_that_leaves_frees_its_slot(
    checkpoint, image_root
) -> None:
    engine = VictEngine.from_checkpoint(checkpoint)
    settings = ServeSettings(model_name=MODEL, max_batch_size=1, max_queue=2)
    url = data_url(image_root / "scene0.png")
    body = {"model": MODEL, "messages": messages(url), "max_tokens": 40}
    with BackgroundServer(create_app(engine, settings)) as running:
        post = f"{running.url}/v1/chat/completions"
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda _: httpx.post(post, json=body, timeout=120), range(12)))
        codes = sorted(r.status_code for r in replies)
        assert set(codes) == {200, 429} and codes.count(429) >= 3, codes
        limited = next(r for r in replies if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1 and limited.json()["error"]["code"] == "queue_full"
        assert httpx.post(post, json=body, timeout=60).status_code == 200
        health = httpx.get(f"{running.url}/health").json()
        assert health["waiting"] == 0 and health["rejected"] == codes.count(429)

        with httpx.stream("POST", post, json={**body, "max_tokens": 250, "stream": True}, timeout=60) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk: the job is in
        deadline = time.monotonic() + 30
        while httpx.get(f"{running.url}/health").json()["cancelled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        health = httpx.get(f"{running.url}/health").json()
        assert health["cancelled"] == 1 and health["running"] == 0 and health["waiting"] == 0
        assert httpx.post(post, json=body, timeout=60).status_code == 200


def test_the_vict_serve_command_serves_and_refuses_bad_flags(checkpoint, image_root, tmp_path, capsys) -> None:
    import os
    import socket
    import subprocess
    import sys

    assert main(["serve", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "not a VICT checkpoint" in capsys.readouterr().err
    bad = ["--image-root", str(tmp_path / "none"), "--max-queue", "0", "--api-key", " "]
    assert main(["serve", "--checkpoint", str(checkpoint), *bad]) == 2
    err = capsys.readouterr().err
    assert "--image-root" in err and "--max-queue 0" in err and "--api-key is empty" in err

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "vict", "serve", "--checkpoint", str(checkpoint), "--port", str(port)]
    process = subprocess.Popen(
        [*args, "--image-root", str(image_root)],
        env={**os.environ, "VICT_API_KEY": "k"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        name = client.models.list().data[0].id
        assert name == f"{checkpoint.parent.name}/final"  # the run folder names the model
        reply = client.chat.completions.create(model=name, messages=messages("scene0.png"), max_tokens=BUDGET)
        assert reply.choices[0].message.content
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert f"model {name!r}" in stderr


class GatedBatcher(Batcher):
    """A batcher whose batches wait for ``gate``: what is queued behind a running batch stays queued."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def run(self, batch):
        self.gate.wait(60)
        return super().run(batch)


def test_a_client_that_gives_up_while_queued_frees_its_place(checkpoint, image_root) -> None:
    engine = VictEngine.from_checkpoint(checkpoint)
    batcher = GatedBatcher(engine, max_batch_size=1, max_queue=1)
    body = {"model": MODEL, "messages": messages(data_url(image_root / "scene0.png")), "max_tokens": 4}
    with BackgroundServer(create_app(engine, ServeSettings(model_name=MODEL), batcher)) as running:
        post, health = f"{running.url}/v1/chat/completions", f"{running.url}/health"
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, post, json=body, timeout=60)
            while httpx.get(health).json()["running"] < 1:
                time.sleep(0.02)
            with pytest.raises(httpx.ReadTimeout):  # queued behind the first, gives up
                httpx.post(post, json=body, timeout=httpx.Timeout(60, read=0.5))
            deadline = time.monotonic() + 10
            while httpx.get(health).json()["waiting"] and time.monotonic() < deadline:
                time.sleep(0.05)
            state = httpx.get(health).json()
            assert state["waiting"] == 0 and state["cancelled"] == 1 and state["running"] == 1
            second = pool.submit(httpx.post, post, json=body, timeout=60)  # its place is free again: no 429
            while not httpx.get(health).json()["waiting"] and not second.done():
                time.sleep(0.02)
            batcher.gate.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
        assert httpx.post(post, json=body, timeout=60).status_code == 200
        assert httpx.get(health).json()["answered"] == 3
