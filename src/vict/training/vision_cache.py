"""Cache of the frozen vision tower's outputs, one entry per image (``train.cache_vision_features``).

The vision tower is frozen, in eval mode and deterministic, and training uses no image augmentation, so its
output for an image never changes during a run: computing it once and feeding the cached ``image_embeds`` to
``VisionLLM.forward`` gives the same loss and gradients as recomputing it (the Q-Former, which the extra queries
need gradients through, still runs every step). After the first epoch a step skips PNG decoding, resizing and
the whole ViT. Memory: ``images x (n_patches + 1) x d_vision`` values in the tower's dtype; the cache refuses
to grow past ``max_bytes`` and says how to proceed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vict.data.images import load_image


class VisionFeatureCache:
    """``image_id -> image_embeds (n_patches + 1, d_vision)`` on the CPU.

    Args:
        image_processor: the VPG's processor (``images=[PIL RGB] -> {"pixel_values": (b, 3, S, S)}``).
        max_bytes: refuse to cache more than this (raises ``MemoryError`` naming the setting to change).
    """

    def __init__(self, image_processor: Any, max_bytes: int) -> None:
        self.image_processor = image_processor
        self.max_bytes = max_bytes
        self.entries: dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @torch.no_grad()
    def embeds(self, vpg: Any, image_ids: Sequence[str], paths: Sequence[Path | None], device: Any) -> torch.Tensor:
        """Image embeds ``(b, n_patches + 1, d_vision)`` on ``device`` for a batch, computing missing ones."""
        missing = [(i, p) for i, p in dict(zip(image_ids, paths)).items() if i not in self.entries]
        self.hits += len(image_ids) - len(missing)
        self.misses += len(missing)
        if missing:
            images = []
            for image_id, path in missing:
                if path is None:
                    raise ValueError(f"image {image_id}: no image_path; load records with an images directory")
                images.append(load_image(path, record=f"image {image_id}"))
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            fresh = vpg.encode_vision(pixels).detach().cpu()
            for (image_id, _), value in zip(missing, fresh):
                size = value.numel() * value.element_size()
                if self.bytes + size > self.max_bytes:
                    raise MemoryError(
                        f"the vision feature cache would exceed train.vision_cache_max_gb="
                        f"{self.max_bytes / 2**30:g} GB at {len(self.entries)} images ({size} bytes each); "
                        "raise the limit or set train.cache_vision_features=false"
                    )
                self.entries[image_id] = value.clone()
                self.bytes += size
        return torch.stack([self.entries[i] for i in image_ids]).to(device)
