"""Images the inference and serving tests share."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Three scenes: one coloured rectangle each, of its own colour, size and place."""
    out = []
    for k, colour in enumerate([(255, 0, 0), (0, 90, 255), (30, 200, 30)]):
        im = Image.new("RGB", (40, 40), (255, 255, 255))
        im.paste(Image.new("RGB", (10 + 8 * k, 12), colour), (4 * k, 6 + 5 * k))
        out.append(im)
    return out
