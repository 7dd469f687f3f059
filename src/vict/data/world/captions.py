"""Five captions per scene: one dense caption naming every fact, four that each mention a subset.

The dense caption always comes first (and is flagged ``"dense": true`` in the COCO annotation). It lists the
objects in reading order as "a <size> <colour> <shape> <position phrase>". The other four are drawn from
``SUBSET_TEMPLATES`` (four distinct templates per image, random objects and order), so a caption given as
context carries some, never all, of what the image shows.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

from vict.data.world.scene import NUMBER_WORDS, POSITION_PHRASE, Scene, WorldObject


def article(phrase: str) -> str:
    """``"a red circle"``, ``"an orange square"``."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def plural(noun: str, n: int) -> str:
    return noun if n == 1 else noun + "s"


def join_words(items: Sequence[str]) -> str:
    """``"a, b and c"``."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def count_phrases(phrases: Sequence[str]) -> list[str]:
    """Group equal noun phrases, keeping first-seen order: ``["small circle"] * 2`` -> ``["two small circles"]``."""
    counts = Counter(phrases)
    return [article(p) if counts[p] == 1 else f"{NUMBER_WORDS[counts[p]]} {plural(p, 2)}" for p in counts]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def dense_caption(scene: Scene) -> str:
    """Every object with size, colour, shape and position, in reading order."""
    return _sentence(join_words([article(o.describe(position=True)) for o in scene.objects]))


def _subset(rng: random.Random, objects: Sequence[WorldObject]) -> list[WorldObject]:
    k = rng.randint(1, len(objects))
    chosen = rng.sample(list(objects), k)
    return chosen


def _cap_shape_counts(rng: random.Random, scene: Scene) -> str:
    shapes = [o.shape for o in scene.objects]
    rng.shuffle(shapes)
    parts = count_phrases(shapes)
    n = len(scene.objects)
    lead = rng.choice([f"{NUMBER_WORDS[n]} {plural('shape', n)}: ", "a picture of ", "there are "])
    if lead == "there are " and n == 1:
        lead = "there is "
    return _sentence(lead + join_words(parts))


def _cap_color_shape(rng: random.Random, scene: Scene) -> str:
    objs = _subset(rng, scene.objects)
    parts = count_phrases([o.describe(size=False) for o in objs])
    there = "there is " if parts[0].startswith(("a ", "an ")) else "there are "
    lead = rng.choice([there, "the image shows ", "we can see "])
    return _sentence(lead + join_words(parts))


def _cap_one_object(rng: random.Random, scene: Scene) -> str:
    o = rng.choice(scene.objects)
    return _sentence(
        rng.choice(
            [
                f"{article(o.describe(position=True))} on a plain background",
                f"a picture with {article(o.describe(position=True))}",
                f"the {o.describe()} is {POSITION_PHRASE[o.position]}",
            ]
        )
    )


def _cap_colors(rng: random.Random, scene: Scene) -> str:
    colors = list(dict.fromkeys(o.color for o in scene.objects))
    rng.shuffle(colors)
    if len(colors) == 1:
        return _sentence(rng.choice([f"everything in the image is {colors[0]}", f"only {colors[0]} shapes"]))
    return _sentence(rng.choice([f"shapes in {join_words(colors)}", f"the colours are {join_words(colors)}"]))


def _cap_size_shape(rng: random.Random, scene: Scene) -> str:
    objs = _subset(rng, scene.objects)
    lead = rng.choice(["", "a drawing of ", "this image contains "])
    return _sentence(lead + join_words(count_phrases([o.describe(color=False) for o in objs])))


def _cap_shape_position(rng: random.Random, scene: Scene) -> str:
    objs = _subset(rng, scene.objects)
    return _sentence(join_words([article(o.describe(size=False, color=False, position=True)) for o in objs]))


def _cap_count(rng: random.Random, scene: Scene) -> str:
    n = len(scene.objects)
    return _sentence(
        rng.choice(
            [
                f"{NUMBER_WORDS[n]} {plural('object', n)} on a light background",
                f"an image with {NUMBER_WORDS[n]} {plural('shape', n)}",
            ]
        )
    )


def _cap_color_position(rng: random.Random, scene: Scene) -> str:
    objs = _subset(rng, scene.objects)
    parts = [f"the {o.describe(size=False)} is {POSITION_PHRASE[o.position]}" for o in objs]
    return _sentence(join_words(parts))


SUBSET_TEMPLATES: dict[str, Callable[[random.Random, Scene], str]] = {
    "shape_counts": _cap_shape_counts,
    "color_shape": _cap_color_shape,
    "one_object": _cap_one_object,
    "colors": _cap_colors,
    "size_shape": _cap_size_shape,
    "shape_position": _cap_shape_position,
    "count": _cap_count,
    "color_position": _cap_color_position,
}

CAPTIONS_PER_IMAGE = 5


def make_captions(scene: Scene, rng: random.Random) -> list[str]:
    """``CAPTIONS_PER_IMAGE`` distinct captions; index 0 is the dense caption."""
    captions = [dense_caption(scene)]
    names = list(SUBSET_TEMPLATES)
    rng.shuffle(names)
    # Try templates in random order; a template may repeat an earlier string on 1-object scenes, then skip it.
    for name in names * 3:
        if len(captions) == CAPTIONS_PER_IMAGE:
            break
        text = SUBSET_TEMPLATES[name](rng, scene)
        if text not in captions:
            captions.append(text)
    while len(captions) < CAPTIONS_PER_IMAGE:  # pragma: no cover - only on pathological vocabularies
        captions.append(captions[len(captions) % max(1, len(captions))])
    return captions
