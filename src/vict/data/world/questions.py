"""GQA-style questions about a scene, with short and sentence answers, balanced so blind guessing stays low.

Every question carries its GQA ``types`` and a small program in GQA's ``semantic`` field (operations
``select``/``query``/``exist``/``count``/``relate``/``verify_rel``/``same``/``choose``/``and``; ``select``
arguments are ``key=value`` pairs joined by ``,`` over ``shape``, ``color``, ``size``, ``position``), so that
tests and users can re-derive every answer from ``scenes.json``.

Relations: A is "to the left of" B when A's grid column is smaller than B's (any row); "above" when A's grid
row is smaller (any column); right of / below likewise.

Balancing: yes/no families flip a fair coin for the answer first, then build a question with that answer;
counting picks the answer uniformly among the counts the scene allows; attribute answers are near uniform
because scene attributes are sampled uniformly. The blind baselines in ``summary.json`` measure the result.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from vict.data.world.captions import article, plural
from vict.data.world.scene import COLORS, POSITION_PHRASE, SHAPES, SIZES, Scene, WorldObject

ATTR_VALUES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "color": tuple(COLORS), "size": SIZES}
ATTR_WORD: dict[str, str] = {"shape": "shape", "color": "colour", "size": "size"}
RELATIONS: dict[str, str] = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}
QUESTIONS_PER_IMAGE = 6
COUNT_WEIGHTS: dict[int, float] = {0: 1.0, 1: 1.5, 2: 4.0, 3: 12.0, 4: 40.0}
"""Weight of each count answer among those a scene allows: large counts are rare in scenes (they need 3-4
objects sharing a shape or colour), so they are favoured when possible to flatten the answer distribution."""


@dataclass(frozen=True)
class WorldQuestion:
    """One question before it is written in GQA format."""

    family: str
    question: str
    answer: str
    full_answer: str
    structural: str
    semantic: str
    program: list[dict]


# ---------------------------------------------------------------- scene predicates (used by the generator)


def matches(obj: WorldObject, spec: dict[str, str]) -> bool:
    """Whether ``obj`` has every ``key=value`` of ``spec`` (keys: shape, color, size, position)."""
    return all((obj.position if k == "position" else getattr(obj, k)) == v for k, v in spec.items())


def holds(rel: str, a: WorldObject, b: WorldObject) -> bool:
    """Whether relation ``rel`` (left/right/above/below) holds from ``a`` to ``b`` (see module doc)."""
    return {
        "left": a.col < b.col,
        "right": a.col > b.col,
        "above": a.row < b.row,
        "below": a.row > b.row,
    }[rel]


def unique_relations(scene: Scene) -> list[tuple[str, WorldObject, WorldObject]]:
    """``(relation, reference, target)`` for every relation and reference object with exactly one object in that
    relation to it (the target), in ``RELATIONS`` then scene order: what "what is <rel> the <ref>?" can ask."""
    return [
        (rel, ref, hits[0])
        for rel in RELATIONS
        for ref in scene.objects
        if len(hits := [o for o in scene.objects if holds(rel, o, ref)]) == 1
    ]


def spec_text(spec: dict[str, str]) -> str:
    """Noun phrase for a spec: ``{"size": "small", "shape": "circle"}`` -> ``"small circle"``."""
    words = [spec[k] for k in ("size", "color") if k in spec]
    words.append(spec.get("shape", "object"))
    text = " ".join(words)
    if "position" in spec:
        text += " " + POSITION_PHRASE[spec["position"]]
    return text


def spec_arg(spec: dict[str, str]) -> str:
    return ",".join(f"{k}={spec[k]}" for k in ("shape", "color", "size", "position") if k in spec)


def _select(spec: dict[str, str]) -> dict:
    return {"operation": "select", "dependencies": [], "argument": spec_arg(spec)}


def referring_spec(rng: random.Random, scene: Scene, obj: WorldObject, exclude: str | None = None) -> dict[str, str]:
    """A description that picks out ``obj`` alone in ``scene``, never mentioning attribute ``exclude``.

    Prefers attribute-only descriptions (shortest first, chosen at random among equals); falls back to the
    grid position, which is always unique.
    """
    attrs = [a for a in ("shape", "color", "size") if a != exclude]
    candidates: list[dict[str, str]] = []
    for k in range(1, len(attrs) + 1):
        for combo in itertools.combinations(attrs, k):
            spec = {a: getattr(obj, a) for a in combo}
            if sum(matches(o, spec) for o in scene.objects) == 1:
                candidates.append(spec)
        if candidates:
            return rng.choice(candidates)
    spec = {a: getattr(obj, a) for a in attrs if rng.random() < 0.5}
    spec["position"] = obj.position
    return spec


# ---------------------------------------------------------------- question families


def _query_attr(attr: str, semantic: str) -> Callable[[random.Random, Scene], WorldQuestion | None]:
    def make(rng: random.Random, scene: Scene) -> WorldQuestion | None:
        obj = rng.choice(scene.objects)
        spec = referring_spec(rng, scene, obj, exclude=attr)
        ref = spec_text(spec)
        value = getattr(obj, attr)
        full = f"The {ref} is {article(value) if attr == 'shape' else value}."
        question = f"What {ATTR_WORD[attr]} is the {ref}?"
        program = [_select(spec), {"operation": "query", "dependencies": [0], "argument": attr}]
        return WorldQuestion(f"query_{attr}", question, value, full, "query", semantic, program)

    return make


def _exist(rng: random.Random, scene: Scene) -> WorldQuestion | None:
    keys = rng.choice([("shape",), ("color", "shape"), ("size", "shape"), ("size", "color", "shape")])
    absent = [
        dict(zip(keys, values))
        for values in itertools.product(*(ATTR_VALUES[k] for k in keys))
        if not any(matches(o, dict(zip(keys, values))) for o in scene.objects)
    ]
    if not absent:  # "no" impossible here: skip rather than ask a question whose answer is forced to "yes"
        return None
    want_yes = rng.random() < 0.5
    if want_yes:
        obj = rng.choice(scene.objects)
        spec = {k: getattr(obj, k) for k in keys}
    else:
        spec = rng.choice(absent)
    desc = spec_text(spec)
    answer = "yes" if want_yes else "no"
    full = f"Yes, there is {article(desc)}." if want_yes else f"No, there is no {desc}."
    program = [_select(spec), {"operation": "exist", "dependencies": [0], "argument": "?"}]
    semantic = "obj" if keys == ("shape",) else "attr"
    return WorldQuestion("exist", f"Is there {article(desc)}?", answer, full, "verify", semantic, program)


def _count_sentence(n: int, noun: str) -> str:
    if n == 0:
        return f"There are no {plural(noun, 2)}."
    return f"There {'is' if n == 1 else 'are'} {n} {plural(noun, n)}."


def _count_by(attr: str, semantic: str) -> Callable[[random.Random, Scene], WorldQuestion | None]:
    def make(rng: random.Random, scene: Scene) -> WorldQuestion | None:
        by_count: dict[int, list[str]] = {}
        for value in ATTR_VALUES[attr]:
            by_count.setdefault(sum(getattr(o, attr) == value for o in scene.objects), []).append(value)
        counts = sorted(by_count)
        n = rng.choices(counts, weights=[COUNT_WEIGHTS[c] for c in counts])[0]
        value = rng.choice(by_count[n])
        spec = {attr: value}
        noun = value if attr == "shape" else f"{value} object"
        question = f"How many {plural(noun, 2)} are there?"
        program = [_select(spec), {"operation": "count", "dependencies": [0], "argument": "?"}]
        return WorldQuestion(f"count_{attr}", question, str(n), _count_sentence(n, noun), "query", semantic, program)

    return make


def _count_all(rng: random.Random, scene: Scene) -> WorldQuestion | None:
    n = len(scene.objects)
    question = rng.choice(["How many objects are there?", "How many shapes are in the image?"])
    noun = "object" if "objects" in question else "shape"
    program = [_select({}), {"operation": "count", "dependencies": [0], "argument": "?"}]
    return WorldQuestion("count_all", question, str(n), _count_sentence(n, noun), "query", "global", program)


def _relate_query(rng: random.Random, scene: Scene) -> WorldQuestion | None:
    options = unique_relations(scene)
    if not options:
        return None
    rel, ref_obj, target = rng.choice(options)
    spec = referring_spec(rng, scene, ref_obj)
    ref = spec_text(spec)
    question = f"What shape is {RELATIONS[rel]} the {ref}?"
    full = f"The {target.shape} is {RELATIONS[rel]} the {ref}."
    program = [
        _select(spec),
        {"operation": "relate", "dependencies": [0], "argument": rel},
        {"operation": "query", "dependencies": [1], "argument": "shape"},
    ]
    return WorldQuestion("relate_query", question, target.shape, full, "query", "rel", program)


def _relate_verify(rng: random.Random, scene: Scene) -> WorldQuestion | None:
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a is not b]
    options = [(a, b, rel) for a, b in pairs for rel in RELATIONS if holds(rel, a, b)]
    if not options:
        return None
    a, b, true_rel = rng.choice(options)
    want_yes = rng.random() < 0.5
    rel = true_rel if want_yes else OPPOSITE[true_rel]
    sa, sb = referring_spec(rng, scene, a), referring_spec(rng, scene, b)
    ta, tb = spec_text(sa), spec_text(sb)
    question = f"Is the {ta} {RELATIONS[rel]} the {tb}?"
    full = (
        f"Yes, the {ta} is {RELATIONS[rel]} the {tb}."
        if want_yes
        else f"No, the {ta} is {RELATIONS[true_rel]} the {tb}."
    )
    program = [
        _select(sa),
        _select(sb),
        {"operation": "verify_rel", "dependencies": [0, 1], "argument": rel},
    ]
    return WorldQuestion("relate_verify", question, "yes" if want_yes else "no", full, "verify", "rel", program)


def _compare_same(rng: random.Random, scene: Scene) -> WorldQuestion | None:
    attr = rng.choice(("color", "shape", "size"))
    all_pairs = list(itertools.combinations(scene.objects, 2))
    same = [(a, b) for a, b in all_pairs if getattr(a, attr) == getattr(b, attr)]
    differ = [(a, b) for a, b in all_pairs if getattr(a, attr) != getattr(b, attr)]
    if not same or not differ:  # only one answer possible in this scene: skip (keeps yes/no at 50/50)
        return None
    want_yes = rng.random() < 0.5
    pairs = same if want_yes else differ
    a, b = rng.choice(pairs)
    if rng.random() < 0.5:
        a, b = b, a
    sa, sb = referring_spec(rng, scene, a, exclude=attr), referring_spec(rng, scene, b, exclude=attr)
    ta, tb = spec_text(sa), spec_text(sb)
    question = f"Are the {ta} and the {tb} the same {ATTR_WORD[attr]}?"
    va, vb = getattr(a, attr), getattr(b, attr)
    if want_yes:
        full = f"Yes, both are {plural(va, 2) if attr == 'shape' else va}."
    else:
        wa, wb = (article(va), article(vb)) if attr == "shape" else (va, vb)
        full = f"No, the {ta} is {wa} and the {tb} is {wb}."
    program = [_select(sa), _select(sb), {"operation": "same", "dependencies": [0, 1], "argument": attr}]
    return WorldQuestion(f"compare_{attr}", question, "yes" if want_yes else "no", full, "compare", "attr", program)


def _choose(attr: str, semantic: str) -> Callable[[random.Random, Scene], WorldQuestion | None]:
    def make(rng: random.Random, scene: Scene) -> WorldQuestion | None:
        obj = rng.choice(scene.objects)
        value = getattr(obj, attr)
        other = rng.choice([v for v in ATTR_VALUES[attr] if v != value])
        first, second = (value, other) if rng.random() < 0.5 else (other, value)
        spec = referring_spec(rng, scene, obj, exclude=attr)
        ref = spec_text(spec)
        if attr == "shape":
            question = f"Is the {ref} {article(first)} or {article(second)}?"
            full = f"The {ref} is {article(value)}."
        else:
            question = f"Is the {ref} {first} or {second}?"
            full = f"The {ref} is {value}."
        program = [_select(spec), {"operation": "choose", "dependencies": [0], "argument": f"{attr}:{first}|{second}"}]
        return WorldQuestion(f"choose_{attr}", question, value, full, "choose", semantic, program)

    return make


def _logical_and(rng: random.Random, scene: Scene) -> WorldQuestion | None:
    keys = ("color", "shape")
    present = list(dict.fromkeys((o.color, o.shape) for o in scene.objects))
    absent = [v for v in itertools.product(COLORS, SHAPES) if v not in present]
    if len(present) < 2:  # "yes" impossible here: skip (keeps yes/no at 50/50)
        return None
    want_yes = rng.random() < 0.5
    if want_yes:
        d1, d2 = rng.sample(present, 2)
    else:
        d1, d2 = rng.choice(present), rng.choice(absent)
        if rng.random() < 0.5:
            d1, d2 = d2, d1
    s1, s2 = dict(zip(keys, d1)), dict(zip(keys, d2))
    t1, t2 = spec_text(s1), spec_text(s2)
    question = f"Is there both {article(t1)} and {article(t2)}?"
    if want_yes:
        full = f"Yes, there is both {article(t1)} and {article(t2)}."
    else:
        missing = t1 if d1 in absent else t2
        full = f"No, there is no {missing}."
    program = [
        _select(s1),
        {"operation": "exist", "dependencies": [0], "argument": "?"},
        _select(s2),
        {"operation": "exist", "dependencies": [2], "argument": "?"},
        {"operation": "and", "dependencies": [1, 3], "argument": ""},
    ]
    return WorldQuestion("logical_and", question, "yes" if want_yes else "no", full, "logical", "obj", program)


FAMILIES: dict[str, Callable[[random.Random, Scene], WorldQuestion | None]] = {
    "query_color": _query_attr("color", "attr"),
    "query_shape": _query_attr("shape", "cat"),
    "query_size": _query_attr("size", "attr"),
    "exist": _exist,
    "count_shape": _count_by("shape", "obj"),
    "count_color": _count_by("color", "attr"),
    "count_all": _count_all,
    "relate_query": _relate_query,
    "relate_verify": _relate_verify,
    "compare_same": _compare_same,
    "choose_color": _choose("color", "attr"),
    "choose_shape": _choose("shape", "cat"),
    "logical_and": _logical_and,
}
"""Question families, by the name written as ``types.detailed`` (``compare_same`` writes ``compare_<attr>``)."""

KIND_OF_FAMILY: dict[str, str] = {
    "query_color": "attribute",
    "query_shape": "attribute",
    "query_size": "attribute",
    "choose_color": "attribute",
    "choose_shape": "attribute",
    "exist": "existence",
    "logical_and": "existence",
    "count_shape": "counting",
    "count_color": "counting",
    "count_all": "counting",
    "relate_query": "spatial",
    "relate_verify": "spatial",
    "compare_color": "comparison",
    "compare_shape": "comparison",
    "compare_size": "comparison",
}
"""``types.detailed`` -> the question type reported in ``summary.json``."""


def make_questions(scene: Scene, rng: random.Random, n: int = QUESTIONS_PER_IMAGE) -> list[WorldQuestion]:
    """Up to ``n`` questions of distinct families (random order) with distinct texts."""
    names = list(FAMILIES)
    rng.shuffle(names)
    out: list[WorldQuestion] = []
    for name in names:
        if len(out) == n:
            break
        q = FAMILIES[name](rng, scene)
        if q is not None and all(q.question != o.question for o in out):
            out.append(q)
    return out
