"""The zoo's pretraining stream: scenes of the miniature world, generated and rendered in memory, never on disk.

A real vision encoder is pretrained on far more images than any downstream data set holds; the miniature does
the same at its scale: every pretraining step draws fresh scenes, so the encoder never sees an image twice.

Disjoint from every world: a world written by ``vict data world`` / ``vict quickstart`` draws scene ``k`` of
seed ``s`` from ``random.Random("vict-world:{s}:{k}:<purpose>")`` (``vict.data.world.scene.image_rng``); the
stream draws scene ``k`` of stream seed ``s`` from ``random.Random("vict-zoo-stream:{s}:{k}:<purpose>")``. The
two key spaces never meet (different prefixes; CPython seeds ``Random`` from a string through SHA-512), so no
world image, and no world's render jitter or texture, is ever an image of the stream. The scene *contents*
(which shapes where) come from the same small space, as real photographs share their objects.

A batch carries what the zoo's objectives need:
- ``pixels (b, 3, S, S)``: exactly what the saved ``BlipImageProcessor`` produces for the rendered image
  (bicubic resize to ``S`` when the render size differs, rescale to [0, 1], CLIP mean/std);
- per-cell labels ``(b, 9)``: ``occupied`` (0/1) and the ``colour``/``shape``/``size`` class of the object in
  the cell (``IGNORE_INDEX`` where empty), cell ``row * 3 + col``;
- the five COCO-style captions (dense first) and the GQA-style questions of every scene, for the generative
  stage and the LMs' text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from vict.constants import IGNORE_INDEX
from vict.data.world.captions import make_captions
from vict.data.world.questions import WorldQuestion, make_questions
from vict.data.world.render import render_scene
from vict.data.world.scene import COLORS, SHAPES, SIZES, Scene, sample_scene

STREAM_NAMESPACE = "vict-zoo-stream"
"""Prefix of every stream rng key; a world's keys start with ``vict-world`` (module doc)."""
NUM_CELLS = 9
ATTRIBUTES: dict[str, tuple[str, ...]] = {"colour": tuple(COLORS), "shape": SHAPES, "size": SIZES}
"""Per-object attribute -> its classes, in label order."""


def stream_rng(seed: int, index: int, purpose: str) -> random.Random:
    """The rng of stream image ``index`` for one ``purpose`` (``scene``, ``render``, ``captions``, ``questions``)."""
    return random.Random(f"{STREAM_NAMESPACE}:{seed}:{index}:{purpose}")


def to_pixels(images: list[Image.Image], image_size: int) -> torch.Tensor:
    """``(n, 3, S, S)`` float32 as the zoo's saved ``BlipImageProcessor`` makes them (PIL bicubic resize when the
    size differs, ``/ 255``, CLIP mean/std); a test checks equality with the processor."""
    mean = np.asarray(OPENAI_CLIP_MEAN, dtype=np.float32)
    std = np.asarray(OPENAI_CLIP_STD, dtype=np.float32)
    arrays = []
    for image in images:
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
        arrays.append((np.asarray(image, dtype=np.float32) / 255.0 - mean) / std)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def cell_labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Per-cell targets ``(n, 9)``: ``occupied`` (0/1), and ``colour``/``shape``/``size`` class ids (ignored where
    the cell is empty)."""
    n = len(scenes)
    labels = {"occupied": torch.zeros(n, NUM_CELLS, dtype=torch.long)}
    for name in ATTRIBUTES:
        labels[name] = torch.full((n, NUM_CELLS), IGNORE_INDEX, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            cell = obj.row * 3 + obj.col
            labels["occupied"][i, cell] = 1
            labels["colour"][i, cell] = ATTRIBUTES["colour"].index(obj.color)
            labels["shape"][i, cell] = SHAPES.index(obj.shape)
            labels["size"][i, cell] = SIZES.index(obj.size)
    return labels


@dataclass
class StreamBatch:
    """Images ``[start, start + len)`` of the stream, rendered and labelled (module doc)."""

    start: int
    scenes: list[Scene]
    pixels: torch.Tensor
    labels: dict[str, torch.Tensor]
    captions: list[list[str]]
    questions: list[list[WorldQuestion]]

    @property
    def dense_captions(self) -> list[str]:
        return [caps[0] for caps in self.captions]


class SceneStream:
    """Stream image ``k`` of ``seed`` is the same on every machine and in every call (``stream_rng``).

    Args:
        seed: the stream's seed (the zoo derives one per stage, so stages see different images).
        image_size: side of the pixel tensors (the BLIP-2's input resolution).
        render_size: side of the rendered image (a world's ``--size``; 64 by default, as ``vict data world``).
    """

    def __init__(self, seed: int, image_size: int, render_size: int = 64) -> None:
        self.seed, self.image_size, self.render_size = seed, image_size, render_size

    def scene(self, index: int) -> Scene:
        return sample_scene(stream_rng(self.seed, index, "scene"), image_id=index)

    def image(self, index: int, scene: Scene | None = None) -> Image.Image:
        scene = scene or self.scene(index)
        return render_scene(scene, self.render_size, stream_rng(self.seed, index, "render"))

    def batch(self, start: int, size: int, text: bool = True, images: bool = True) -> StreamBatch:
        """Images ``start .. start + size - 1``; ``text=False`` skips captions and questions, ``images=False`` the
        rendering (``pixels`` is then empty)."""
        indices = range(start, start + size)
        scenes = [self.scene(i) for i in indices]
        pixels = (
            to_pixels([self.image(i, s) for i, s in zip(indices, scenes, strict=True)], self.image_size)
            if images
            else torch.empty(0)
        )
        captions, questions = [], []
        if text:
            for i, s in zip(indices, scenes, strict=True):
                captions.append(make_captions(s, stream_rng(self.seed, i, "captions")))
                questions.append(make_questions(s, stream_rng(self.seed, i, "questions")))
        return StreamBatch(start, scenes, pixels, cell_labels(scenes), captions, questions)
