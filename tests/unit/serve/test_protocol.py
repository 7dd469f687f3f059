"""Reading OpenAI chat-completions requests strictly (``vict.serve.protocol``)."""

from __future__ import annotations

import pytest

from vict.inference import Context
from vict.serve.errors import RequestError
from vict.serve.protocol import parse_chat_request

URL = "data:image/png;base64,AAAA"
BUDGETS = {"short": 10, "sentence": 40}


def user(text: str | None = "what color is it?", image: bool = True) -> dict:
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": URL}}] if image else []
    if text is not None:
        parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


def parse(**body):
    body.setdefault("model", "m")
    body.setdefault("messages", [user()])
    return parse_chat_request(body, "m", BUDGETS, max_tokens=64)


def refused(**body) -> RequestError:
    with pytest.raises(RequestError) as err:
        parse(**body)
    return err.value


def test_a_plain_request_reads_as_vict_ask_defaults() -> None:
    r = parse()
    assert (
        r.question == "what color is it?"
        and r.image_url == URL
        and r.image_param == "messages[0].content[0].image_url.url"
    )
    assert r.context == Context.none() and r.context_from == "none" and r.style == "short"
    assert r.decoding.max_new_tokens == 10 and r.decoding.greedy and not r.stream
    assert parse(vict={"style": "sentence"}).decoding.max_new_tokens == 40
    d = parse(max_tokens=5, temperature=0.7, top_p=0.5, seed=3, stop="x").decoding
    assert (d.max_new_tokens, d.temperature, d.top_p, d.seed, d.stop) == (5, 0.7, 0.5, 3, ("x",))
    assert parse(max_completion_tokens=7).decoding.max_new_tokens == 7
    assert parse(stream=True, stream_options={"include_usage": True}).include_usage


def test_context_modes_of_the_extension() -> None:
    assert parse(vict={"context": "self"}).context == Context.own_caption()
    assert parse(vict={"context": "caption", "caption": "a red  square"}).context == Context.given_caption(
        "a red square"
    )
    qa = parse(vict={"context": "qa", "qa": {"question": "what shape?", "answer": "square"}})
    assert qa.context == Context.given_qa("what shape?", "square") and qa.context_from == "request"
    assert refused(vict={"context": "caption"}).param == "vict.caption"
    assert refused(vict={"context": "qa", "qa": {"question": "q"}}).param == "vict.qa"
    assert refused(vict={"context": "dense"}).param == "vict.context"
    assert refused(vict={"context": "self", "caption": "x"}).param == "vict.caption"
    assert refused(vict={"contxt": "self"}).param == "vict.contxt"
    assert refused(vict={"style": "long"}).param == "vict.style"


def test_earlier_turns_become_a_question_answer_context() -> None:
    messages = [
        {"role": "system", "content": "you are helpful"},
        user("what shape is it?"),
        {"role": "assistant", "content": "square"},
        {"role": "user", "content": "and its color?"},
    ]
    r = parse(messages=messages)
    assert r.context == Context.given_qa("what shape is it?", "square") and r.context_from == "history"
    assert r.question == "and its color?"
    explicit = parse(messages=messages, vict={"context": "self"})
    assert explicit.context == Context.own_caption() and explicit.context_from == "request"
    assert parse(messages=messages, vict={"context": "none"}).context == Context.none()


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"model": "other"}, "model", 404),
        ({"model": 3}, "model", 400),
        ({"n": 2}, "n", 400),
        ({"temperature": "hot"}, "temperature", 400),
        ({"temperature": True}, "temperature", 400),
        ({"temperature": 3}, "temperature", 400),
        ({"top_p": 0}, "top_p", 400),
        ({"max_tokens": 0}, "max_tokens", 400),
        ({"max_tokens": 65}, "max_tokens", 400),
        ({"max_tokens": 2.5}, "max_tokens", 400),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", 400),
        ({"stop": 3}, "stop", 400),
        ({"seed": -1}, "seed", 400),
        ({"stream": "yes"}, "stream", 400),
        ({"stream_options": {"include_usage": True}}, "stream_options", 400),
        ({"frequency_penalty": 0.5}, "frequency_penalty", 400),
        ({"logprobs": True}, "logprobs", 400),
        ({"max_tokenz": 3}, "max_tokenz", 400),
        ({"messages": []}, "messages", 400),
        ({"messages": "hi"}, "messages", 400),
        ({"messages": [user(image=False)], "vict": {"context": "self"}}, "messages", 400),
        ({"messages": [user(), user()]}, "messages[1].content[0].image_url.url", 400),
        ({"messages": [user(None)]}, "messages[0].content", 400),
        ({"messages": [user("   ")]}, "messages[0].content[1].text", 400),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", 400),
        ({"messages": [user(), {"role": "assistant", "content": "x"}]}, "messages[1].role", 400),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type", 400),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", 400),
    ],
)
def test_bad_requests_name_the_field(body: dict, param: str, status: int) -> None:
    err = refused(**body)
    assert (err.param, err.status) == (param, status), err.message
    assert err.body()["error"]["message"] == err.message and err.body()["error"]["type"]


def test_the_body_must_be_an_object() -> None:
    with pytest.raises(RequestError, match="JSON object"):
        parse_chat_request([1], "m", BUDGETS, 64)
