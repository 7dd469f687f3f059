"""The world's held-out GQA-format questions rewritten in the official VQA v2 format (questions + annotations files).

For each split of ``VQAV2_SPLITS`` (val, test), ``vqav2_split`` turns ``{split}_balanced_questions.json`` into
``v2_OpenEnded_mscoco_{split}_questions.json`` (``info``, ``task_type``, ``data_type``, ``data_subtype``,
``questions: [{image_id, question, question_id}]``, ``license``) and ``v2_mscoco_{split}_annotations.json``
(``info``, ``license``, ``data_type``, ``data_subtype``, ``annotations``). Ids: ``question_id`` is the GQA question
id as an int, ``image_id`` the COCO image id the caption files use.

The ten human answers of a question (``human_answers``) are all true; VQA's annotators agree on a world this
regular, so most of them equal the short answer after the official VQA normalisation, and a few are honest
paraphrases that the normalisation does not merge:

- ``EQUIVALENT_P`` (number of answers, out of ten) are spellings that normalise to the short answer: ``"Yes"``,
  ``"yes."``, ``"two"`` for ``"2"``, ``"none"``/``"zero"`` for ``"0"``, ``"a circle"``/``"the circle"``,
  ``"Red"``;
- ``PARAPHRASE_P`` are paraphrases that stay different: ``"yeah"``, ``"nope"``, ``"2 circles"``, ``"violet"``
  for purple, ``"red color"``, ``"round"`` for circle, ``"big"`` for large;
- the rest are the short answer itself.

At most ``MAX_PARAPHRASES`` = 3 paraphrases, so at least 7 of 10 humans give the short answer (up to
normalisation) and it scores 100; a paraphrase said by ``k`` humans earns the official ``min(k / 3, 1)`` averaged
over the ten leave-one-out subsets. When all ten answers are the same string the official scorer does not normalise
at all (so ``"two"`` against ten ``"2"`` scores 0): that quirk is kept, not avoided.

Each question draws from its own rngs, ``random.Random(f"vict-world-vqav2:{seed}:{question_id}:{purpose}")``: no
draw from the streams the rest of the world uses, and the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from pathlib import Path

from vict.data.world.captions import article
from vict.data.world.layout import VQAV2_SPLITS, vqav2_files
from vict.data.world.scene import COLORS, SHAPES

ANSWERS_PER_QUESTION = 10
PARAPHRASE_P: dict[int, float] = {0: 0.45, 1: 0.3, 2: 0.15, 3: 0.1}
"""How many of the ten answers are paraphrases that the VQA normalisation keeps different from the short answer."""
MAX_PARAPHRASES = max(PARAPHRASE_P)
EQUIVALENT_P: dict[int, float] = {0: 0.6, 1: 0.3, 2: 0.1}
"""How many of the ten answers are other spellings that normalise to the short answer."""
MAYBE_P = 0.1
"""Share of answers whose ``answer_confidence`` is ``"maybe"`` (the rest ``"yes"``)."""

NUMBER_SPELLINGS: dict[str, tuple[str, ...]] = {
    "0": ("zero", "none"),
    "1": ("one",),
    "2": ("two",),
    "3": ("three",),
    "4": ("four",),
}
"""Digit -> words that the official ``manualMap`` maps back to it."""
COLOUR_PARAPHRASES: dict[str, tuple[str, ...]] = {c: (f"{c} color",) for c in COLORS} | {
    "purple": ("violet", "purple color"),
}
SHAPE_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "circle": ("round", "circle shape"),
    "square": ("square shape",),
    "triangle": ("triangular", "triangle shape"),
    "diamond": ("rhombus", "diamond shape"),
}
SIZE_PARAPHRASES: dict[str, tuple[str, ...]] = {"small": ("little", "tiny"), "large": ("big",)}
YES_NO_PARAPHRASES: dict[str, tuple[str, ...]] = {"yes": ("yeah", "yep"), "no": ("nope",)}

QUESTION_TYPES: tuple[str, ...] = (
    "what colour is the",
    "what shape is the",
    "what size is the",
    "what shape is",
    "is there both",
    "is there a",
    "is there an",
    "how many",
    "is the",
    "are the",
)
"""VQA-style ``question_type`` values (question prefixes, the longest that matches wins)."""

_HOW_MANY = re.compile(r"how many (.+?) are (?:there|in the image)\?", re.IGNORECASE)


def vqav2_rng(seed: int, question_id: int, purpose: str = "answers") -> random.Random:
    """The rng private to one question and one purpose (``answers``, ``confidence``)."""
    return random.Random(f"vict-world-vqav2:{seed}:{question_id}:{purpose}")


def answer_type(answer: str) -> str:
    """``"yes/no"``, ``"number"`` or ``"other"``, as VQA v2 labels its answers."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "number" if answer.isdigit() else "other"


def question_type(question: str) -> str:
    """The longest ``QUESTION_TYPES`` prefix of the lower-cased question (else its first two words)."""
    text = question.lower()
    for prefix in sorted(QUESTION_TYPES, key=len, reverse=True):
        if text.startswith(prefix + " "):
            return prefix
    return " ".join(text.split()[:2])


def equivalent_spellings(answer: str) -> tuple[str, ...]:
    """Other spellings of ``answer`` that the official VQA normalisation turns back into it."""
    if answer in NUMBER_SPELLINGS:
        return NUMBER_SPELLINGS[answer]
    if answer in SHAPES:
        return (article(answer), f"the {answer}")
    return (answer.capitalize(), f"{answer}.")


def paraphrases(answer: str, question: str) -> tuple[str, ...]:
    """True answers that the normalisation keeps different from ``answer`` (``"2 circles"``, ``"violet"``)."""
    if answer in YES_NO_PARAPHRASES:
        return YES_NO_PARAPHRASES[answer]
    if answer.isdigit():
        match = _HOW_MANY.fullmatch(question)
        if match is None:
            return ()
        noun = match.group(1)
        n = int(answer)
        if n == 0:
            return (f"no {noun}",)
        return (f"{n} {noun[:-1] if n == 1 and noun.endswith('s') else noun}",)
    for table in (COLOUR_PARAPHRASES, SHAPE_PARAPHRASES, SIZE_PARAPHRASES):
        if answer in table:
            return table[answer]
    return ()


def human_answers(answer: str, question: str, rng: random.Random) -> list[str]:
    """Ten human answers to ``question`` whose short answer is ``answer`` (module doc), in a random order."""
    options = paraphrases(answer, question)
    n_para = rng.choices(list(PARAPHRASE_P), weights=list(PARAPHRASE_P.values()))[0] if options else 0
    n_equiv = rng.choices(list(EQUIVALENT_P), weights=list(EQUIVALENT_P.values()))[0]
    spellings = equivalent_spellings(answer)
    answers = [rng.choice(options) for _ in range(n_para)]
    answers += [rng.choice(spellings) for _ in range(n_equiv)]
    answers += [answer] * (ANSWERS_PER_QUESTION - len(answers))
    rng.shuffle(answers)
    return answers


def _info(split: str, seed: int) -> dict:
    return {"description": f"vict miniature world, VQA v2 format, split {split}", "version": "1", "seed": seed}


LICENSE = {"name": "generated by vict (no restrictions)", "url": ""}


def vqav2_split(gqa_questions: Mapping[str, dict], split: str, seed: int) -> tuple[dict, dict]:
    """The official VQA v2 ``(questions, annotations)`` files of one split from its GQA-format questions."""
    questions, annotations = [], []
    for qid_str, q in gqa_questions.items():
        qid, image_id = int(qid_str), int(q["imageId"])
        answers = human_answers(q["answer"], q["question"], vqav2_rng(seed, qid))
        rng = vqav2_rng(seed, qid, "confidence")
        confidences = ["maybe" if rng.random() < MAYBE_P else "yes" for _ in answers]
        questions.append({"image_id": image_id, "question": q["question"], "question_id": qid})
        annotations.append(
            {
                "question_type": question_type(q["question"]),
                "multiple_choice_answer": q["answer"],
                "answers": [
                    {"answer": a, "answer_confidence": c, "answer_id": k + 1}
                    for k, (a, c) in enumerate(zip(answers, confidences, strict=True))
                ],
                "image_id": image_id,
                "answer_type": answer_type(q["answer"]),
                "question_id": qid,
            }
        )
    questions_file = {
        "info": _info(split, seed),
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": split,
        "questions": questions,
        "license": LICENSE,
    }
    annotations_file = {
        "info": _info(split, seed),
        "license": LICENSE,
        "data_type": "mscoco",
        "data_subtype": split,
        "annotations": annotations,
    }
    return questions_file, annotations_file


def write_vqav2(out: str | Path, gqa: Mapping[str, Mapping[str, dict]], seed: int) -> dict[str, int]:
    """Write the VQA v2 files of every ``VQAV2_SPLITS`` split of ``gqa`` (``{split: {qid: question}}``) under
    ``out``; returns the number of questions per split."""
    counts = {}
    for split in VQAV2_SPLITS:
        files = vqav2_files(out, split)
        files["questions"].parent.mkdir(parents=True, exist_ok=True)
        questions, annotations = vqav2_split(gqa[split], split, seed)
        for path, obj in ((files["questions"], questions), (files["annotations"], annotations)):
            path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        counts[split] = len(questions["questions"])
    return counts
