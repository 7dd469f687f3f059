"""ScienceQA-mini: multiple-choice problems about the world, written in the official ScienceQA layout.

Files (``vict.data.world.layout.scienceqa_files``): ``scienceqa/problems.json`` (``{pid: problem}`` with every key of
the official records: question, choices, answer, hint, image, task, grade, subject, topic, category, skill,
lecture, solution, split), ``scienceqa/pid_splits.json`` (``{"train", "val", "test"}``) and
``scienceqa/images/{split}/{pid}/image.png`` (the world image's PNG bytes, unchanged). A problem's split is the world
split of the image it was made from, so no test scene is seen in train.

Problems per world image ``k`` (pids ``"1", "2", ...`` in image order, then in this order):

- **IMG** (every image): one question about the scene, with its image; its skill comes from a seeded order that
  covers every ``SCENE_SKILLS`` entry once in each block of seven images (a skill the scene cannot ask, e.g. a
  relation in a one-object scene, falls back to another). The hint is ``""``, except for a share ``IMG_HINT_P``
  whose hint is a true caption-style sentence that does not settle the answer (so TXT and IMG overlap, as in the
  official data): the number of shapes for a colour question, the colours for a shape question, and so on.
- **TXT** (images with ``k % TXT_EVERY == 1``): a scene question with no image whose hint is the scene's dense
  caption (the world's caption language: every object's size, colour, shape and position), which settles it.
- **NO** (images with ``k % NO_EVERY == 4``): no image and no hint; word knowledge the zoo's LMs read in their
  pretraining text (``vict.zoo.corpus``): that text always answers "What colour is ...?" with a colour word,
  "What shape ...?" with a shape word and "What size ...?" with a size word, and lists colours after "the colours
  are" and shapes after "shapes:", so "Which word is a colour/shape/size?" is answerable from it; and its count
  sentences ("There is 1 circle.", "There are 3 circles.") fix singular and plural, so "Which word completes the
  sentence "There are 3 ___."?" is too. Number words against digits ("two" for 2) are *not* asked: number words
  appear only in captions and digits only in answers, never in one document, so that text does not teach it.

Choices: 2-5 (as many as the skill's vocabulary allows, drawn uniformly), the right one at a uniformly drawn index.

Category mapping (``SKILLS``; the official categories are NAT/SOC/LAN by ``subject``, TXT/IMG/NO by context,
G1-6/G7-12 by ``grade``):

====================  ===============  =======  ==========================================================
skill                 subject          grade    question
====================  ===============  =======  ==========================================================
colour                natural science  grade1   What colour is the small circle?
shape                 natural science  grade1   Which shape is in the top left?
size                  natural science  grade2   What size is the red circle?
same                  natural science  grade7   Are the red circle and the blue square the same size?
count                 social science   grade3   How many circles are there?
position              social science   grade4   Where is the red circle?
relation              social science   grade8   Which shape is to the left of the red circle?
colour_word           language science grade1   Which word is a colour?
shape_word            language science grade1   Which word is a shape?
size_word             language science grade2   Which word is a size?
number_agreement      language science grade3   Which word completes the sentence "There are 3 ___."?
====================  ===============  =======  ==========================================================

Natural science is what an object *is* (its attributes), social science where objects are and how many (reading a
grid, counting), language science the words themselves; the two-object skills (same, relation) are the upper
grades. Every scene skill occurs with an image and as TXT, so NAT and SOC hold IMG and TXT problems; LAN holds the
NO problems.

Randomness: ``random.Random(f"vict-world-sqa:{seed}:{k}:{purpose}")`` per image and purpose, and
``random.Random(f"vict-world-sqa:{seed}:block:{b}")`` for the skill order; nothing is drawn from the streams the
rest of the world uses, so every other file of the world is unchanged, and the same seed gives the same bytes.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vict.data.world.captions import article, dense_caption, join_words, plural
from vict.data.world.layout import IMAGES_DIR, SPLITS, scienceqa_files
from vict.data.world.questions import ATTR_WORD, RELATIONS, referring_spec, spec_text, unique_relations
from vict.data.world.scene import COLORS, COLS, NUMBER_WORDS, POSITION_PHRASE, ROWS, SHAPES, SIZES, Scene, WorldObject

MAX_CHOICES = 5
IMG_HINT_P = 0.25
"""Share of IMG problems whose hint is a true sentence that does not settle the answer."""
TXT_EVERY = 3
"""Images ``k`` with ``k % TXT_EVERY == 1`` also give a TXT problem (about a third of the images)."""
NO_EVERY = 6
"""Images ``k`` with ``k % NO_EVERY == 4`` also give a NO problem (about a sixth)."""
MAX_COUNT = 4


@dataclass(frozen=True)
class Skill:
    """The official metadata of a kind of problem."""

    subject: str
    grade: str
    topic: str
    category: str
    skill: str
    lecture: str


_GRID = (
    "A picture is a grid of three rows (top, middle, bottom) and three columns (left, center, right). A place is "
    "named by its row and column: top left, top, top right, left, center, right, bottom left, bottom and bottom right."
)
SKILLS: dict[str, Skill] = {
    "colour": Skill(
        "natural science",
        "grade1",
        "colours",
        "Identify colours",
        "Name the colour of an object",
        f"Every object has a colour. The colours in these pictures are {join_words(list(COLORS))}.",
    ),
    "shape": Skill(
        "natural science",
        "grade1",
        "shapes",
        "Identify shapes",
        "Name the shape in a place",
        f"Every object has a shape. The shapes in these pictures are {join_words([plural(s, 2) for s in SHAPES])}.",
    ),
    "size": Skill(
        "natural science",
        "grade2",
        "sizes",
        "Identify sizes",
        "Tell a small object from a large one",
        "Every object has a size. An object is small or large.",
    ),
    "same": Skill(
        "natural science",
        "grade7",
        "comparing objects",
        "Compare objects",
        "Tell whether two objects share a colour, shape or size",
        "Two objects are the same colour when they have one colour, the same shape when they have one shape and the "
        "same size when both are small or both are large.",
    ),
    "count": Skill(
        "social science",
        "grade3",
        "counting",
        "Count objects",
        "Count the objects of a kind",
        "To count objects of a kind, find every object of that kind and count them one by one. When there is "
        "none, the number is 0.",
    ),
    "position": Skill(
        "social science",
        "grade4",
        "grids",
        "Read a grid",
        "Name the place of an object",
        _GRID,
    ),
    "relation": Skill(
        "social science",
        "grade8",
        "grids",
        "Relative positions",
        "Find an object from another one",
        _GRID + " An object is to the left of another when its column is further left, whatever the rows, and above "
        "it when its row is higher, whatever the columns; to the right of and below work the same way.",
    ),
    "colour_word": Skill(
        "language science",
        "grade1",
        "vocabulary",
        "Word categories",
        "Find the colour word",
        "Words can be sorted by what they name. Colour words name colours, shape words name shapes and size words "
        "name sizes.",
    ),
    "shape_word": Skill(
        "language science",
        "grade1",
        "vocabulary",
        "Word categories",
        "Find the shape word",
        "Words can be sorted by what they name. Colour words name colours, shape words name shapes and size words "
        "name sizes.",
    ),
    "size_word": Skill(
        "language science",
        "grade2",
        "vocabulary",
        "Word categories",
        "Find the size word",
        "Words can be sorted by what they name. Colour words name colours, shape words name shapes and size words "
        "name sizes.",
    ),
    "number_agreement": Skill(
        "language science",
        "grade3",
        "grammar",
        "Singular and plural nouns",
        "Use a singular or plural noun after a number",
        "A singular noun names one thing: circle. A plural noun names more than one: circles. After is and 1, use a "
        "singular noun; after are and a larger number, use a plural noun.",
    ),
}
"""Problem skill -> its official metadata (module doc)."""


@dataclass(frozen=True)
class Item:
    """A problem before it has choices, a pid and a split. ``wrong``: the wrong options to draw choices from;
    ``partial_hint``: a true sentence about the scene that does not settle the answer (scene skills only)."""

    skill: str
    question: str
    answer: str
    wrong: tuple[str, ...]
    solution: str
    partial_hint: str = ""


# ---------------------------------------------------------------- caption-style sentences used as partial hints


def _count_hint(scene: Scene) -> str:
    n = len(scene.objects)
    return f"An image with {NUMBER_WORDS[n]} {plural('shape', n)}."


def _colours_hint(scene: Scene) -> str:
    colors = list(dict.fromkeys(o.color for o in scene.objects))
    if len(colors) == 1:
        return f"Everything in the image is {colors[0]}."
    return f"The colours are {join_words(colors)}."


def _one_object_hint(obj: WorldObject) -> str:
    return f"The {obj.describe()} is {POSITION_PHRASE[obj.position]}."


def _others(values: Sequence[str], answer: str) -> tuple[str, ...]:
    return tuple(v for v in values if v != answer)


# ---------------------------------------------------------------- scene skills: (rng, scene) -> Item | None


def _colour(rng: random.Random, scene: Scene) -> Item | None:
    obj = rng.choice(scene.objects)
    ref = spec_text(referring_spec(rng, scene, obj, exclude="color"))
    solution = f"The {ref} is {article(obj.describe(position=True))}. Its colour is {obj.color}."
    return Item(
        "colour",
        f"What colour is the {ref}?",
        obj.color,
        _others(tuple(COLORS), obj.color),
        solution,
        _count_hint(scene),
    )


def _shape(rng: random.Random, scene: Scene) -> Item | None:
    obj = rng.choice(scene.objects)
    where = POSITION_PHRASE[obj.position]
    solution = f"The object {where} is {article(obj.describe())}. Its shape is {article(obj.shape)}."
    return Item(
        "shape", f"Which shape is {where}?", obj.shape, _others(SHAPES, obj.shape), solution, _colours_hint(scene)
    )


def _size(rng: random.Random, scene: Scene) -> Item | None:
    obj = rng.choice(scene.objects)
    ref = spec_text(referring_spec(rng, scene, obj, exclude="size"))
    solution = f"The {ref} is {article(obj.describe(position=True))}. It is {obj.size}."
    return Item("size", f"What size is the {ref}?", obj.size, _others(SIZES, obj.size), solution, _count_hint(scene))


def _same(rng: random.Random, scene: Scene) -> Item | None:
    attr = rng.choice(("color", "shape", "size"))
    pairs = list(itertools.combinations(scene.objects, 2))
    if not pairs:
        return None
    same = [(a, b) for a, b in pairs if getattr(a, attr) == getattr(b, attr)]
    differ = [(a, b) for a, b in pairs if getattr(a, attr) != getattr(b, attr)]
    want_yes = bool(same) and (not differ or rng.random() < 0.5)
    a, b = rng.choice(same if want_yes else differ)
    if rng.random() < 0.5:
        a, b = b, a
    ta = spec_text(referring_spec(rng, scene, a, exclude=attr))
    tb = spec_text(referring_spec(rng, scene, b, exclude=attr))
    va, vb = getattr(a, attr), getattr(b, attr)
    if attr == "shape":
        va, vb = article(va), article(vb)
    answer = "yes" if want_yes else "no"
    solution = f"The {ta} is {va} and the {tb} is {vb}."
    question = f"Are the {ta} and the {tb} the same {ATTR_WORD[attr]}?"
    return Item("same", question, answer, _others(("yes", "no"), answer), solution, _count_hint(scene))


def _count(rng: random.Random, scene: Scene) -> Item | None:
    attr = rng.choice(("shape", "color", "all"))
    if attr == "all":
        n, noun, value = len(scene.objects), "object", ""
        hint = _one_object_hint(rng.choice(scene.objects))
    else:
        values = SHAPES if attr == "shape" else tuple(COLORS)
        by_count: dict[int, list[str]] = {}
        for value in values:
            by_count.setdefault(sum(getattr(o, attr) == value for o in scene.objects), []).append(value)
        n = rng.choice(sorted(by_count))  # uniform over the counts the scene allows, so 0 does not dominate
        value = rng.choice(by_count[n])
        noun = value if attr == "shape" else f"{value} object"
        # Colours say nothing of how many of a shape there are; the number of shapes says nothing of a colour.
        hint = _colours_hint(scene) if attr == "shape" else _count_hint(scene)
    counted = [o for o in scene.objects if attr == "all" or getattr(o, attr) == value]
    listed = f": {join_words([article(o.describe(position=True)) for o in counted])}" if counted else ""
    solution = (
        f"There {'is' if n == 1 else 'are'} {n} {plural(noun, n)}{listed}."
        if n
        else f"There are no {plural(noun, 2)}."
    )
    digits = tuple(str(i) for i in range(MAX_COUNT + 1))
    return Item("count", f"How many {plural(noun, 2)} are there?", str(n), _others(digits, str(n)), solution, hint)


def _position(rng: random.Random, scene: Scene) -> Item | None:
    obj = rng.choice(scene.objects)
    spec = referring_spec(rng, scene, obj, exclude=None)
    if "position" in spec:  # two identical objects: only the answer itself could tell them apart
        return None
    ref = spec_text(spec)
    where = POSITION_PHRASE[obj.position]
    solution = f"The {ref} is in the {ROWS[obj.row]} row and the {COLS[obj.col]} column of the grid, so it is {where}."
    return Item(
        "position",
        f"Where is the {ref}?",
        where,
        _others(tuple(POSITION_PHRASE.values()), where),
        solution,
        _count_hint(scene),
    )


def _relation(rng: random.Random, scene: Scene) -> Item | None:
    options = unique_relations(scene)
    if not options:
        return None
    rel, ref_obj, target = rng.choice(options)
    ref = spec_text(referring_spec(rng, scene, ref_obj))
    solution = (
        f"The {ref} is {POSITION_PHRASE[ref_obj.position]}. The only object {RELATIONS[rel]} it is "
        f"{article(target.describe(position=True))}."
    )
    question = f"Which shape is {RELATIONS[rel]} the {ref}?"
    return Item("relation", question, target.shape, _others(SHAPES, target.shape), solution, _colours_hint(scene))


SCENE_SKILLS: dict[str, Callable[[random.Random, Scene], Item | None]] = {
    "colour": _colour,
    "shape": _shape,
    "size": _size,
    "same": _same,
    "count": _count,
    "position": _position,
    "relation": _relation,
}
"""Skills asked about a scene (IMG, or TXT with the dense caption as hint)."""


# ---------------------------------------------------------------- no-context skills: rng -> Item

WORD_CLASSES: dict[str, tuple[str, ...]] = {"colour": tuple(COLORS), "shape": SHAPES, "size": SIZES}


def _word(kind: str) -> Callable[[random.Random], Item]:
    def make(rng: random.Random) -> Item:
        answer = rng.choice(WORD_CLASSES[kind])
        wrong = tuple(w for k, words in WORD_CLASSES.items() if k != kind for w in words)
        solution = f"{answer.capitalize()} is a {kind} word: it names a {kind}."
        return Item(f"{kind}_word", f"Which word is a {kind}?", answer, wrong, solution)

    return make


def _number_agreement(rng: random.Random) -> Item:
    shape = rng.choice(SHAPES)
    n = 1 if rng.random() < 0.5 else rng.randint(2, MAX_COUNT)
    verb = "is" if n == 1 else "are"
    answer = plural(shape, n)
    other = plural(shape, 2) if n == 1 else shape
    kind = "singular" if n == 1 else "plural"
    solution = f"After {verb} {n}, use the {kind} noun: There {verb} {n} {answer}."
    question = f'Which word completes the sentence "There {verb} {n} ___."?'
    return Item("number_agreement", question, answer, (other,), solution)


NO_CONTEXT_SKILLS: dict[str, Callable[[random.Random], Item]] = {
    "colour_word": _word("colour"),
    "shape_word": _word("shape"),
    "size_word": _word("size"),
    "number_agreement": _number_agreement,
}
"""Skills asked with neither image nor hint (module doc: why the LMs' pretraining text answers them)."""


# ---------------------------------------------------------------- assembling problems


def sqa_rng(seed: int, image_index: int, purpose: str) -> random.Random:
    """The rng private to one world image and one purpose (``img``, ``txt``, ``no``)."""
    return random.Random(f"vict-world-sqa:{seed}:{image_index}:{purpose}")


def img_skill_order(seed: int, block: int) -> list[str]:
    """The IMG skills of images ``block * 7 .. block * 7 + 6``: every scene skill once, in a seeded order."""
    names = list(SCENE_SKILLS)
    random.Random(f"vict-world-sqa:{seed}:block:{block}").shuffle(names)
    return names


def _scene_item(rng: random.Random, scene: Scene, first: str) -> Item:
    """An item of skill ``first`` or, when the scene cannot ask it, of another skill (seeded order)."""
    rest = [s for s in SCENE_SKILLS if s != first]
    rng.shuffle(rest)
    for name in [first, *rest]:
        item = SCENE_SKILLS[name](rng, scene)
        if item is not None:
            return item
    raise AssertionError(f"no ScienceQA skill fits scene {scene.image_id}")  # colour/shape/size always fit


def _choices(rng: random.Random, answer: str, wrong: Sequence[str]) -> tuple[list[str], int]:
    n = rng.randint(2, min(MAX_CHOICES, 1 + len(wrong)))
    options = rng.sample(list(wrong), n - 1)
    index = rng.randrange(n)
    return [*options[:index], answer, *options[index:]], index


def _record(rng: random.Random, item: Item, hint: str, image: bool, split: str) -> dict:
    skill = SKILLS[item.skill]
    choices, answer = _choices(rng, item.answer, item.wrong)
    return {
        "question": item.question,
        "choices": choices,
        "answer": answer,
        "hint": hint,
        "image": "image.png" if image else None,
        "task": "yes or no" if set(choices) == {"yes", "no"} else "closed choice",
        "grade": skill.grade,
        "subject": skill.subject,
        "topic": skill.topic,
        "category": skill.category,
        "skill": skill.skill,
        "lecture": skill.lecture,
        "solution": item.solution,
        "split": split,
    }


def image_problems(scene: Scene, image_index: int, split: str, seed: int) -> list[dict]:
    """The problems made from world image ``image_index`` (module doc), as official records without pids."""
    n_skills = len(SCENE_SKILLS)
    first = img_skill_order(seed, image_index // n_skills)[image_index % n_skills]
    rng = sqa_rng(seed, image_index, "img")
    item = _scene_item(rng, scene, first)
    hint = item.partial_hint if rng.random() < IMG_HINT_P else ""
    problems = [_record(rng, item, hint, True, split)]
    if image_index % TXT_EVERY == 1:
        rng = sqa_rng(seed, image_index, "txt")
        item = _scene_item(rng, scene, rng.choice(list(SCENE_SKILLS)))
        problems.append(_record(rng, item, dense_caption(scene), False, split))
    if image_index % NO_EVERY == 4:
        rng = sqa_rng(seed, image_index, "no")
        item = NO_CONTEXT_SKILLS[rng.choice(list(NO_CONTEXT_SKILLS))](rng)
        problems.append(_record(rng, item, "", False, split))
    return problems


def make_scienceqa(scenes: Sequence[Scene], splits: Sequence[str], seed: int) -> tuple[dict, dict, dict[str, int]]:
    """``(problems, pid_splits, image_of)`` for a world: the official ``problems.json`` and ``pid_splits.json``
    objects, and the world image id of every problem that has an image (``{pid: image_id}``)."""
    problems: dict[str, dict] = {}
    pid_splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    image_of: dict[str, int] = {}
    for index, (scene, split) in enumerate(zip(scenes, splits, strict=True)):
        for record in image_problems(scene, index, split, seed):
            pid = str(len(problems) + 1)
            problems[pid] = record
            pid_splits[split].append(pid)
            if record["image"] is not None:
                image_of[pid] = scene.image_id
    return problems, pid_splits, image_of


def write_scienceqa(out: str | Path, scenes: Sequence[Scene], splits: Sequence[str], seed: int) -> dict:
    """Write ScienceQA-mini under ``out`` (the world folder, whose ``images/`` are already written); returns the
    problems (``{pid: record}``)."""
    out = Path(out)
    files = scienceqa_files(out)
    problems, pid_splits, image_of = make_scienceqa(scenes, splits, seed)
    for pid, image_id in image_of.items():
        folder = files["images_dir"] / problems[pid]["split"] / pid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "image.png").write_bytes((out / IMAGES_DIR / f"{image_id}.png").read_bytes())
    for path, obj in ((files["problems"], problems), (files["pid_splits"], pid_splits)):
        path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return problems
