"""How well the zoo's BLIP-2 captions held-out images: attribute-word accuracy and CIDEr.

Two complementary measures, both computed on images the BLIP-2 never saw:
- teacher-forced accuracy of the next-word prediction on the dense captions, overall and on the words that
  carry the scene's facts (colour, shape, size, position; chance for colour is 1/6);
- greedy captions scored with CIDEr-D against all 5 references (pycocoevalcap's scorer on lower-cased,
  punctuation-stripped words; the official PTB tokenisation of ``vict score`` gives close but not identical
  numbers).
The same measures on the freshly initialised model give the "untrained" reference.
"""

from __future__ import annotations

import re

import torch
from pycocoevalcap.cider.cider import Cider
from transformers import Blip2ForConditionalGeneration, PreTrainedTokenizerFast

from vict.constants import IGNORE_INDEX
from vict.data.world.scene import COLORS, COLS, ROWS, SHAPES, SIZES
from vict.zoo.blip2 import caption_batch

WORD_GROUPS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLORS),
    "shape": SHAPES,
    "size": SIZES,
    "position": (*ROWS, *COLS),
}
"""Fact-carrying words of the world's captions, by attribute."""


def _group_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, set[int]]:
    """Token ids of each group's words (words that are not a single token are left out)."""
    groups = {}
    for name, words in WORD_GROUPS.items():
        ids = set()
        for word in words:
            tok = tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(tok) == 1 and tok[0] != tokenizer.unk_token_id:
                ids.add(tok[0])
        groups[name] = ids
    return groups


@torch.no_grad()
def token_accuracy(
    model: Blip2ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    pixel_values: torch.Tensor,
    captions: list[list[int]],
    batch_size: int = 32,
) -> dict[str, float]:
    """Teacher-forced next-token accuracy (percent) on ``captions`` (``<s> ... </s>`` ids) given
    ``pixel_values (n, 3, H, W)``: ``all`` target tokens and each of ``WORD_GROUPS``."""
    groups = _group_ids(tokenizer)
    hits = {name: 0 for name in ["all", *groups]}
    counts = dict.fromkeys(hits, 0)
    q, image_token = model.config.num_query_tokens, model.config.image_token_index
    model.eval()
    for start in range(0, len(captions), batch_size):
        caps = captions[start : start + batch_size]
        input_ids, mask, labels = caption_batch(caps, q, image_token, tokenizer.pad_token_id)
        logits = model(
            pixel_values=pixel_values[start : start + len(caps)], input_ids=input_ids, attention_mask=mask
        ).logits
        pred = logits[:, :-1].argmax(-1)
        target = labels[:, 1:]
        valid = target != IGNORE_INDEX
        correct = (pred == target) & valid
        hits["all"] += int(correct.sum())
        counts["all"] += int(valid.sum())
        for name, ids in groups.items():
            in_group = valid & torch.isin(target, torch.tensor(sorted(ids), dtype=torch.long))
            hits[name] += int((correct & in_group).sum())
            counts[name] += int(in_group.sum())
    return {name: round(100.0 * hits[name] / counts[name], 2) if counts[name] else float("nan") for name in hits}


@torch.no_grad()
def generate_captions(
    model: Blip2ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    pixel_values: torch.Tensor,
    max_new_tokens: int = 40,
    batch_size: int = 32,
) -> list[str]:
    """Greedy captions of ``pixel_values (n, 3, H, W)`` through transformers' own ``generate`` (the prompt is
    ``[<image>] * num_query_tokens + <s>``, as for a hub BLIP-2 called without text)."""
    model.eval()
    out: list[str] = []
    for start in range(0, pixel_values.shape[0], batch_size):
        ids = model.generate(
            pixel_values=pixel_values[start : start + batch_size], max_new_tokens=max_new_tokens, do_sample=False
        )
        out.extend(t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True))
    return out


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def cider(predictions: list[str], references: list[list[str]]) -> float:
    """CIDEr-D (x100, as papers print it) of one prediction per image against its references."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"cider: {len(predictions)} predictions for {len(references)} reference sets")
    gts = {i: [_words(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_words(p) or "empty"] for i, p in enumerate(predictions)}
    score, _ = Cider().compute_score(gts, res)
    return round(100.0 * float(score), 2)


def caption_quality(
    model: Blip2ForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    pixel_values: torch.Tensor,
    dense_captions: list[list[int]],
    references: list[list[str]],
) -> dict[str, object]:
    """All quality measures on held-out images: ``token_accuracy`` (percent by word group), ``cider`` and a
    few ``examples`` (generated caption, dense reference)."""
    accuracy = token_accuracy(model, tokenizer, pixel_values, dense_captions)
    generated = generate_captions(model, tokenizer, pixel_values)
    return {
        "images": len(references),
        "token_accuracy": accuracy,
        "cider": cider(generated, references),
        "examples": [
            {"generated": g, "dense_reference": tokenizer.decode(d, skip_special_tokens=True)}
            for g, d in zip(generated[:3], dense_captions[:3])
        ],
    }
