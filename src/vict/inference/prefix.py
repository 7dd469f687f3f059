"""Prefix reuse: the key/value cache of the tokens every prompt about an image starts with, computed once per image.

Every prompt the engine builds about an image begins the same way: the instruction text before the image, the
image's visual tokens and whatever text all templates share after them (with the miniature's templates: BOS and the
image slots). A decoder's keys and values at a position depend only on the tokens up to it, so that prefix's cache is
the same for the ``self`` caption pass, the answer pass and every question about the image; it is computed once per
image and continued from by every prompt that starts with exactly those token ids.

Data flow of one ``VictEngine.generate`` batch with reuse on:

    prompts ─► collator (left padded, as without reuse) ─► rows whose image is given and whose ids start with the
               shared prefix ids P (others: the plain path, in their own call)
    images without a stored prefix ─► ``VisionLLM.prefill`` on (u, |P|), bound to those images ─► one entry per image
    rows ─► [P][pad…][suffix]  (the pads move from before P to after it; positions count attended tokens only, so
            every token keeps its position) + the rows' prefix entries stacked into one ``DynamicCache`` (an image
            asked several times in a batch: its entry repeated, copy on write as ``DynamicCache`` grows by
            concatenation) ─► ``generate_ids(..., cache=...)``, which runs only the suffixes and the decoding.

Greedy outputs are those of the plain path (``tests/unit/inference/test_prefix.py``). The shared prefix is found, not
assumed: the longest common token prefix of the engine's own prompts (the caption prompt and every answer kind and
style with two different fillings), never ending inside an image's slots, so any template layout works (a prefix of
no tokens turns reuse off). A prompt needs a token of its own after the prefix to continue from it: one that is the
prefix and nothing more (a frozen LLM's caption prompt, ``<image>`` alone) takes the plain path. Entries live in an LRU of ``max_images`` images, dropped with
the feature cache by ``release()``. An entry holds ``layers × 2 × |P| × kv_dim`` values per image (LLaMA-7B, bf16,
|P| = 33, BOS and 32 visual tokens: 17 MB).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import torch

Entry = list[tuple[torch.Tensor, torch.Tensor]]
"""One image's prefix: per LLM layer ``(keys, values)``, each ``(1, kv_heads, |P|, head_dim)``."""


def common_prefix(rows: Sequence[Sequence[int]], slot_id: int, slots: int) -> list[int]:
    """The longest common prefix of token id rows, never ending inside a run of ``slots`` image slots ``slot_id``
    (the prefix is prefilled with its images, so it holds all of an image's slots or none)."""
    if not rows:
        return []
    n = min(len(r) for r in rows)
    first = rows[0]
    k = 0
    while k < n and all(r[k] == first[k] for r in rows):
        k += 1
    prefix = list(first[:k])
    if 0 < prefix.count(slot_id) < slots:
        prefix = prefix[: prefix.index(slot_id)]
    return prefix


def unpadded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """The attended ids of each row of a left-padded batch."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]


def stackable(cache: Any) -> bool:
    """True for a cache whose layers all hold every position (``DynamicLayer``): entries can be cut and stacked.
    Sliding-window or linear-attention layers keep other state, and reuse stays off for them."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class PrefixCache:
    """Per-image prefix entries, least recently used out beyond ``max_images``.

    Counters: ``computed`` (images whose prefix was prefilled), ``hits`` (rows that continued from a stored entry).
    """

    def __init__(self, prefix_ids: Sequence[int], max_images: int | None) -> None:
        self.prefix_ids = list(prefix_ids)
        self.max_images = max_images
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._pinned: dict[Hashable, Any] = {}
        self.computed = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def matches(self, ids: Sequence[int]) -> bool:
        """True for a prompt that starts with the prefix and has at least one token after it."""
        n = len(self.prefix_ids)
        return n > 0 and len(ids) > n and list(ids[:n]) == self.prefix_ids

    def put(self, key: Hashable, cache: Any, row: int, source: Any = None) -> None:
        """Store row ``row`` of a prefilled ``cache`` as the entry of ``key`` (``source``: an in-memory image,
        kept alive while stored so that its ``id()`` key stays unique)."""
        self._entries[key] = [
            (layer.keys[row : row + 1].clone(), layer.values[row : row + 1].clone()) for layer in cache.layers
        ]
        if source is not None and not isinstance(source, str | Path):
            self._pinned[key] = source
        self.computed += 1

    def assemble(self, keys: Sequence[Hashable], config: Any) -> Any:
        """A ``DynamicCache`` whose row ``i`` is the entry of ``keys[i]`` (all stored)."""
        from transformers import DynamicCache

        entries = [self._entries[k] for k in keys]
        for k in keys:
            self._entries.move_to_end(k)
        self.hits += len(keys)
        cache = DynamicCache(config=config)
        for layer in range(len(entries[0])):
            keys_ = torch.cat([e[layer][0] for e in entries])
            values = torch.cat([e[layer][1] for e in entries])
            cache.update(keys_, values, layer)
        return cache

    def trim(self, keep: int = 0) -> None:
        """Evict least recently used entries beyond the bound (never fewer than ``keep``, the batch in use)."""
        while self.max_images is not None and len(self._entries) > max(self.max_images, keep):
            key, _ = self._entries.popitem(last=False)
            self._pinned.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._pinned.clear()
