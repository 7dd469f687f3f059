"""Render a scene to a small RGB image with Pillow, and encode it as PNG bytes, deterministically."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

from vict.data.world.scene import COLORS, SIZE_FRACTION, Scene

SUPERSAMPLE = 2
"""Draw at 2x and downsample with a box filter: smooth edges at a cost of well under a millisecond."""
TEXTURE_AMPLITUDE = 6
"""Half-range of the per-pixel background noise (0-255 scale): 'lightly textured', never object-like."""


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return None


def render_scene(scene: Scene, size: int, rng: random.Random) -> Image.Image:
    """Draw ``scene`` on a ``size`` x ``size`` RGB image; ``rng`` jitters positions and the background texture.

    Each object is centred in its grid cell plus a jitter that keeps it inside the cell, so objects never
    overlap and the position words stay true.
    """
    big = size * SUPERSAMPLE
    noise_rng = np.random.default_rng(rng.getrandbits(63))
    canvas = Image.new("RGB", (big, big), tuple(scene.background))
    draw = ImageDraw.Draw(canvas)
    cell = big / 3
    for obj in scene.objects:
        r = SIZE_FRACTION[obj.size] * cell
        slack = max(0.0, cell / 2 - r - SUPERSAMPLE)
        cx = (obj.col + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (obj.row + 0.5) * cell + rng.uniform(-slack, slack)
        fill = COLORS[obj.color]
        points = _polygon(obj.shape, cx, cy, r)
        if points is not None:
            draw.polygon(points, fill=fill)
        elif obj.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif obj.shape == "square":
            h = r * 0.82  # similar area to the circle of the same size
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        else:
            raise ValueError(f"unknown shape {obj.shape!r} in scene {scene.image_id}")
    small = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.int16)
    # Texture after downsampling: a quarter of the noise work, and it reaches the objects too (no flat colours).
    noise = noise_rng.integers(-TEXTURE_AMPLITUDE, TEXTURE_AMPLITUDE + 1, size=(size, size, 1), dtype=np.int16)
    return Image.fromarray(np.clip(small + noise, 0, 255).astype(np.uint8), mode="RGB")


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding with fixed settings and no metadata chunks, so equal pixels give equal bytes.

    zlib level 1: the textured background barely compresses anyway, and level 6 doubles the encode time.
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()
