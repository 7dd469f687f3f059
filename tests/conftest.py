"""Shared fixtures: a hermetic cache for the tiny model zoo, the tiny VICT model, batches with image slots.

Every test session writes its tiny BLIP-2 / LLaMA checkpoints into a temporary ``VICT_CACHE_DIR`` (about a
second, once), so tests never read or pollute the user's ``~/.cache/vict``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID

# The test models are tiny: intra-op threading only adds synchronisation cost, which explodes on a shared,
# oversubscribed CI machine (measured: a tiny VisionLLM forward 0.35-0.6 s with 2 threads vs 0.05 s with 1).
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def vict_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A per-session ``VICT_CACHE_DIR`` (tiny checkpoints are generated into it on first use)."""
    path = tmp_path_factory.mktemp("vict_cache")
    previous = os.environ.get("VICT_CACHE_DIR")
    os.environ["VICT_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("VICT_CACHE_DIR", None)
    else:
        os.environ["VICT_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny VICT-LoRA checkpoint (4 extra queries, seed 0), read-only: what `vict ask`, `vict serve` and
    `vict demo` load in their tests."""
    from vict.models.builders import build_tiny

    out = tmp_path_factory.mktemp("tiny_ckpt") / "final"
    build_tiny("lora", num_extra_queries=4, seed=0).save_pretrained(out)
    return out


@pytest.fixture
def tiny_model():
    """A fresh tiny VICT model (LoRA r=4, 8 + 4 visual tokens, 30 px images), seed 0, in eval mode."""
    from vict.models.builders import build_tiny

    return build_tiny("lora", num_extra_queries=4, seed=0)


def make_batch(model, prompts: list[str], targets: list[str] | None = None, side: str = "right") -> dict:
    """``[bos, slots x n_visual, prompt tokens, (target tokens, eos)]`` per row, padded on ``side``.

    Labels are the target tokens and eos; -100 on bos, slots, prompt and padding.
    """
    tok = model.tokenizer
    n = model.num_visual_tokens
    rows, labs = [], []
    for i, prompt in enumerate(prompts):
        ids = [tok.bos_token_id, *([IMAGE_SLOT_ID] * n), *tok(prompt, add_special_tokens=False)["input_ids"]]
        lab = [IGNORE_INDEX] * len(ids)
        if targets is not None:
            tgt = [*tok(targets[i], add_special_tokens=False)["input_ids"], tok.eos_token_id]
            ids, lab = ids + tgt, lab + tgt
        rows.append(ids)
        labs.append(lab)
    width = max(map(len, rows))
    pad = tok.pad_token_id
    input_ids, mask, labels = [], [], []
    for ids, lab in zip(rows, labs):
        fill = width - len(ids)
        if side == "left":
            input_ids.append([pad] * fill + ids)
            mask.append([0] * fill + [1] * len(ids))
            labels.append([IGNORE_INDEX] * fill + lab)
        else:
            input_ids.append(ids + [pad] * fill)
            mask.append([1] * len(ids) + [0] * fill)
            labels.append(lab + [IGNORE_INDEX] * fill)
    generator = torch.Generator().manual_seed(len(prompts))
    size = model.vpg.image_size
    batch = {
        "pixel_values": torch.randn(len(prompts), 3, size, size, generator=generator),
        "input_ids": torch.tensor(input_ids),
        "attention_mask": torch.tensor(mask),
    }
    if targets is not None:
        batch["labels"] = torch.tensor(labels)
    return batch


@pytest.fixture
def batch_factory():
    """``make_batch`` as a fixture."""
    return make_batch
