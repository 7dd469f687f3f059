"""Test-only methods and connectors, registered for one test and removed after it; decoding checks the method tests
share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from vict import registry


@contextlib.contextmanager
def registered(*classes: type) -> Iterator[None]:
    """Register ``classes`` (methods or connectors) for the duration of a block."""
    for cls in classes:
        register = registry.register_connector if hasattr(cls, "levels") else registry.register_method
        register(cls)
    try:
        yield
    finally:
        for cls in classes:
            registry.unregister(cls.name)


@pytest.fixture
def register():
    """``with register(MyMethod, MyConnector): ...``"""
    return registered


def recompute_greedy(model, batch: dict, steps: int) -> torch.Tensor:
    """``steps`` greedy tokens per row with no cache: the whole sequence runs again at every step."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(pixel_values=batch["pixel_values"], input_ids=ids, attention_mask=mask).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return torch.cat(out, 1)


def assert_cached_equals_recomputed(model, batch: dict, steps: int = 6) -> None:
    """Cached greedy decoding (``generate_ids``) gives every row the tokens of full recomputation, up to its end."""
    cached = model.generate_ids(
        batch["pixel_values"], batch["input_ids"], batch["attention_mask"], max_new_tokens=steps
    )
    recomputed = recompute_greedy(model, batch, steps)
    eos = model.tokenizer.eos_token_id
    for row in range(batch["input_ids"].shape[0]):  # generate pads a row after its end of text
        a, b = cached[row].tolist(), recomputed[row].tolist()
        stop = b.index(eos) + 1 if eos in b else len(b)
        assert a[:stop] == b[:stop], (row, a, b)


def generate_one_by_one(model, batch: dict, max_new_tokens: int = 6) -> list[str]:
    """``model.generate`` on each row of a left-padded ``batch`` alone (its padding removed)."""
    texts = []
    for i in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][i].bool()
        one = {
            "pixel_values": batch["pixel_values"][i : i + 1],
            "input_ids": batch["input_ids"][i : i + 1, keep],
            "attention_mask": batch["attention_mask"][i : i + 1, keep],
        }
        texts.extend(model.generate(**one, max_new_tokens=max_new_tokens))
    return texts


@pytest.fixture
def decoding() -> SimpleNamespace:
    """Decoding checks shared by the method tests: ``assert_cached_equals_recomputed(model, batch, steps)`` and
    ``generate_one_by_one(model, batch, max_new_tokens)``."""
    return SimpleNamespace(
        assert_cached_equals_recomputed=assert_cached_equals_recomputed, generate_one_by_one=generate_one_by_one
    )
