"""Batch helpers for the model tests: prompts with image slots, as the collator builds them."""

from __future__ import annotations

import pytest
import torch

from vict.constants import IGNORE_INDEX, IMAGE_SLOT_ID


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
