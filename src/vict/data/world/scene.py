"""Scenes of the miniature world: a small, regular vocabulary and a seeded sampler.

A scene is 1-4 objects on a 3x3 grid, at most one object per cell, so objects never overlap and every
position word names exactly one place. Each object has a shape, a colour and a size, drawn independently
and uniformly, except that with probability ``REPEAT_P`` an attribute is copied from an earlier object of the
same scene: that makes "same colour?" and "how many circles?" questions have non-trivial answers.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 75, 220),
    "yellow": (235, 205, 20),
    "purple": (140, 45, 170),
    "orange": (245, 130, 20),
}
"""Colour name -> RGB fill. Saturated and far apart so that a tiny ViT can tell them apart at 64 px."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
SIZE_FRACTION: dict[str, float] = {"small": 0.28, "large": 0.45}
"""Object radius as a fraction of a grid cell's side (a cell is 1/3 of the image), so objects stay in their cell."""

ROWS: tuple[str, ...] = ("top", "middle", "bottom")
COLS: tuple[str, ...] = ("left", "center", "right")
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
"""Position name of grid cell ``row * 3 + col``, as used in captions and questions."""

POSITION_WORDS: tuple[str, ...] = ("top", "bottom", "left", "right", "center")
"""The words that position names and phrases are made of (``ROWS``' "middle" never appears in text)."""

POSITION_PHRASE: dict[str, str] = {
    "top left": "in the top left",
    "top": "at the top",
    "top right": "in the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}

MIN_OBJECTS, MAX_OBJECTS = 1, 4
REPEAT_P = 0.3

NUMBER_WORDS: dict[int, str] = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class WorldObject:
    """One object: its attributes and its grid cell (``row``, ``col`` in 0..2)."""

    shape: str
    color: str
    size: str
    row: int
    col: int

    @property
    def position(self) -> str:
        return POSITIONS[self.row * 3 + self.col]

    def describe(self, *, size: bool = True, color: bool = True, position: bool = False) -> str:
        """Noun phrase without article, e.g. ``"small red circle"`` or ``"red circle in the top left"``."""
        words = ([self.size] if size else []) + ([self.color] if color else []) + [self.shape]
        text = " ".join(words)
        return f"{text} {POSITION_PHRASE[self.position]}" if position else text


@dataclass(frozen=True)
class Scene:
    """A scene: background tone and objects in reading order (row-major by grid cell)."""

    image_id: int
    background: tuple[int, int, int]
    objects: tuple[WorldObject, ...]

    def to_json(self) -> dict:
        return {
            "image_id": self.image_id,
            "background": list(self.background),
            "objects": [asdict(o) | {"position": o.position} for o in self.objects],
        }

    @classmethod
    def from_json(cls, data: dict) -> Scene:
        objects = tuple(
            WorldObject(shape=o["shape"], color=o["color"], size=o["size"], row=o["row"], col=o["col"])
            for o in data["objects"]
        )
        return cls(image_id=int(data["image_id"]), background=tuple(data["background"]), objects=objects)


def image_rng(seed: int, image_index: int, stream: str) -> random.Random:
    """An rng private to one image and one purpose, so that image k is the same whatever N is.

    String seeds go through SHA-512 in CPython, so this is stable across processes and ``PYTHONHASHSEED``.
    """
    return random.Random(f"vict-world:{seed}:{image_index}:{stream}")


def _pick(rng: random.Random, values: tuple[str, ...], earlier: list[str]) -> str:
    if earlier and rng.random() < REPEAT_P:
        return rng.choice(earlier)
    return rng.choice(values)


def sample_scene(rng: random.Random, image_id: int) -> Scene:
    """Sample a scene: 1-4 objects (uniform count) in distinct grid cells, attributes as in the module doc."""
    n = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    cells = sorted(rng.sample(range(9), n))
    objects: list[WorldObject] = []
    for cell in cells:
        shape = _pick(rng, SHAPES, [o.shape for o in objects])
        color = _pick(rng, tuple(COLORS), [o.color for o in objects])
        size = rng.choice(SIZES)
        objects.append(WorldObject(shape=shape, color=color, size=size, row=cell // 3, col=cell % 3))
    # Light, low-saturation background so every object colour stands out.
    base = rng.randint(205, 240)
    background = (base + rng.randint(-8, 8), base + rng.randint(-8, 8), base + rng.randint(-8, 8))
    return Scene(image_id=image_id, background=background, objects=tuple(objects))
