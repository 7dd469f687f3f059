"""One per-image feature cache, used by training, evaluation and answering.

A frozen part of a model computes the same features for an image every time it sees it, so they are computed once
and reused: in training (``train.cache_vision_features``) the features no trainable parameter influences (the
vision tower's output while the extra queries train), at inference everything before the connector's own layers
(the Q-Former outputs), for a BLIP-2 baseline its projected Q-Former outputs. What the features are is the
owner's ``encode``; this class only keys, batches, counts and bounds them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch

Source = Any
"""Whatever ``load`` turns into an image: a path, or a ``PIL.Image`` already in memory."""


CONTENT_KEY = "vict.content_key"
"""The ``PIL.Image.info`` entry that names an in-memory image by its content (see ``image_key``)."""


def image_key(image: Any) -> Hashable:
    """The cache key of an image: its path (as a string) or, for an in-memory image, the object's identity, unless
    its ``info`` holds a content key (``CONTENT_KEY``, e.g. a digest of the bytes it was decoded from: the server
    sets one, so that requests about the same image share its cached features, prefix and caption)."""
    if isinstance(image, str | Path):
        return str(image)
    content = getattr(image, "info", {}).get(CONTENT_KEY) if hasattr(image, "info") else None
    return f"content:{content}" if content else id(image)


class FeatureCache:
    """``key -> features`` of one image, computed in batches on first sight, kept on the CPU.

    Args:
        encode: a list of loaded images -> ``(b, ...)`` features (one row per image).
        load: a source (path or image) -> the loaded image that ``encode`` takes.
        batch_size: images per ``encode`` call when filling the cache.
        max_images: keep at most this many images, least recently used out first (``None``: no bound).
        max_bytes: refuse to hold more than this (``MemoryError`` naming ``limit_setting``; ``None``: no bound).
        limit_setting: the setting to name when ``max_bytes`` is hit.

    Counters: ``encoded`` (images run through ``encode``), ``hits``, ``bytes``.
    """

    def __init__(
        self,
        encode: Callable[[list[Any]], torch.Tensor],
        load: Callable[[Source], Any],
        batch_size: int = 32,
        max_images: int | None = None,
        max_bytes: int | None = None,
        limit_setting: str = "the cache's max_bytes",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images={max_images}: must be >= 1 or None")
        self.encode, self.load = encode, load
        self.batch_size, self.max_images, self.max_bytes = batch_size, max_images, max_bytes
        self.limit_setting = limit_setting
        self._rows: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._pinned: dict[Hashable, Any] = {}  # in-memory images stay alive while cached, so their id() stays unique
        self.encoded = 0
        self.hits = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        """Drop every cached row (the counters are kept)."""
        self._rows.clear()
        self._pinned.clear()
        self.bytes = 0

    @torch.no_grad()
    def get(self, keys: Sequence[Hashable], sources: Sequence[Source], device: Any = None) -> torch.Tensor:
        """Stacked features ``(len(keys), ...)`` on ``device``, encoding (once each) the keys not cached yet."""
        if len(keys) != len(sources):
            raise ValueError(f"{len(keys)} keys but {len(sources)} sources: give one source per key")
        todo: dict[Hashable, Source] = {}
        for key, source in zip(keys, sources):
            if key in self._rows:
                self._rows.move_to_end(key)
            else:
                todo.setdefault(key, source)
        self.hits += len(keys) - len(todo)
        pending = list(todo)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            fresh = self.encode([self.load(todo[k]) for k in chunk]).detach().cpu()
            self.encoded += len(chunk)
            for key, row in zip(chunk, fresh):
                self._insert(key, row.clone(), todo[key])
        out = torch.stack([self._rows[k] for k in keys])
        self._evict(protect=set(keys))
        return out if device is None else out.to(device)

    def _insert(self, key: Hashable, row: torch.Tensor, source: Source) -> None:
        size = row.numel() * row.element_size()
        if self.max_bytes is not None and self.bytes + size > self.max_bytes:
            raise MemoryError(
                f"the feature cache would exceed {self.limit_setting} ({self.max_bytes / 2**30:g} GB) at "
                f"{len(self._rows)} images ({size} bytes each); raise the limit or turn the cache off"
            )
        self._rows[key] = row
        self.bytes += size
        if not isinstance(source, str | Path):
            self._pinned[key] = source

    def _evict(self, protect: set[Hashable]) -> None:
        if self.max_images is None:
            return
        for key in list(self._rows):
            if len(self._rows) <= self.max_images:
                break
            if key in protect:
                continue
            row = self._rows.pop(key)
            self.bytes -= row.numel() * row.element_size()
            self._pinned.pop(key, None)
