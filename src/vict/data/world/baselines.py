"""Blind baselines: how well a model that never sees the image can answer, fitted on train, scored on test.

The GQA ones are pure functions over GQA-format question dicts (``{qid: {"question", "answer", "types", ...}}``),
the ScienceQA ones over official ``problems.json`` records (``{pid: {"question", "choices", "answer", ...}}``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping

from vict.data.world.scene import COLORS, POSITION_WORDS, SHAPES, SIZES


def majority_answer_accuracy(train: Mapping[str, dict], test: Mapping[str, dict]) -> tuple[str, float]:
    """Accuracy on ``test`` of always answering the most frequent ``train`` answer; returns (answer, accuracy)."""
    if not train or not test:
        return "", 0.0
    answer = Counter(q["answer"] for q in train.values()).most_common(1)[0][0]
    return answer, sum(q["answer"] == answer for q in test.values()) / len(test)


def question_only_accuracy(train: Mapping[str, dict], test: Mapping[str, dict]) -> dict[str, float]:
    """Accuracy on ``test`` of question-only predictors fitted on ``train``.

    - ``by_type``: the most frequent train answer of the question's ``types.detailed``;
    - ``by_text``: the most frequent train answer of the exact question text, backing off to ``by_type``
      (then to the global majority) for texts never seen in train.
    Also ``best`` = the larger of the two, the number to compare a model against.
    """
    if not test:
        return {"by_type": 0.0, "by_text": 0.0, "best": 0.0}
    by_type: dict[str, Counter] = defaultdict(Counter)
    by_text: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for q in train.values():
        by_type[q["types"]["detailed"]][q["answer"]] += 1
        by_text[q["question"]][q["answer"]] += 1
        overall[q["answer"]] += 1
    fallback = overall.most_common(1)[0][0] if overall else ""

    def type_guess(q: dict) -> str:
        counts = by_type.get(q["types"]["detailed"])
        return counts.most_common(1)[0][0] if counts else fallback

    def text_guess(q: dict) -> str:
        counts = by_text.get(q["question"])
        return counts.most_common(1)[0][0] if counts else type_guess(q)

    n = len(test)
    acc_type = sum(type_guess(q) == q["answer"] for q in test.values()) / n
    acc_text = sum(text_guess(q) == q["answer"] for q in test.values()) / n
    return {"by_type": acc_type, "by_text": acc_text, "best": max(acc_type, acc_text)}


# ---------------------------------------------------------------- ScienceQA-mini (official problems.json records)

SCIENCEQA_CATEGORIES: tuple[str, ...] = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Average")
"""The official ScienceQA categories (``tools/evaluate_acc.py``), in the paper's column order."""
SUBJECT_CATEGORY: dict[str, str] = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}

_PLACEHOLDERS: dict[str, str] = (
    {c: "<colour>" for c in COLORS}
    | {w: "<shape>" for s in SHAPES for w in (s, s + "s")}
    | {s: "<size>" for s in SIZES}
    | {w: "<position>" for w in POSITION_WORDS}
)
_WORD = re.compile(r"[A-Za-z]+|\d+")


def scienceqa_categories(problem: Mapping) -> list[str]:
    """The official categories one ``problems.json`` record counts in (``Average`` included): its subject's, TXT
    when the hint is not empty, IMG when it has an image (both when both), NO when neither, and its grade band."""
    cats = [SUBJECT_CATEGORY[problem["subject"]]]
    if problem["hint"]:
        cats.append("TXT")
    if problem["image"]:
        cats.append("IMG")
    if not problem["hint"] and not problem["image"]:
        cats.append("NO")
    cats.append("G1-6" if int(problem["grade"].removeprefix("grade")) <= 6 else "G7-12")
    return [*cats, "Average"]


def question_pattern(question: str) -> str:
    """The question with every world vocabulary word replaced by its class: ``"What colour is the small circle?"``
    -> ``"What colour is the <size> <shape>?"``; digits become ``<number>``."""

    def repl(m: re.Match) -> str:
        word = m.group(0)
        return "<number>" if word.isdigit() else _PLACEHOLDERS.get(word.lower(), word)

    return _WORD.sub(repl, question)


def _by_category(verdicts: Mapping[str, float], problems: Mapping[str, Mapping]) -> dict[str, float | None]:
    sums: dict[str, list[float]] = {c: [] for c in SCIENCEQA_CATEGORIES}
    for pid, value in verdicts.items():
        for cat in scienceqa_categories(problems[pid]):
            sums[cat].append(value)
    return {c: (sum(v) / len(v) if v else None) for c, v in sums.items()}


def scienceqa_random_accuracy(problems: Mapping[str, Mapping]) -> dict[str, float | None]:
    """Expected accuracy of a uniformly random choice, per official category: the mean of ``1 / len(choices)``
    (exact, not sampled); ``None`` for an empty category."""
    return _by_category({pid: 1 / len(p["choices"]) for pid, p in problems.items()}, problems)


def scienceqa_question_only_predictions(train: Mapping[str, Mapping], test: Mapping[str, Mapping]) -> dict[str, int]:
    """Choice index per ``test`` pid of the question-only baseline: among the problem's own choices, the one most
    often right among the ``train`` problems of the same ``question_pattern`` (a blind model that reads the question
    and the options); ties, and patterns unseen in train, go to the earliest such choice in the problem's order
    (so an unseen pattern gets the first choice)."""
    by_pattern: dict[str, Counter] = defaultdict(Counter)
    for p in train.values():
        by_pattern[question_pattern(p["question"])][p["choices"][p["answer"]]] += 1
    out = {}
    for pid, p in test.items():
        counts = by_pattern.get(question_pattern(p["question"]), Counter())
        scores = [counts.get(choice, 0) for choice in p["choices"]]
        out[pid] = scores.index(max(scores))
    return out


def scienceqa_accuracy(predictions: Mapping[str, int], problems: Mapping[str, Mapping]) -> dict[str, float | None]:
    """Accuracy of choice indices ``{pid: index}`` over ``problems`` per official category (``None`` when empty)."""
    return _by_category({pid: float(predictions[pid] == p["answer"]) for pid, p in problems.items()}, problems)


def scienceqa_baselines(problems: Mapping[str, Mapping]) -> dict:
    """ScienceQA-mini's blind baselines, fitted on the train problems and scored on the test problems, per official
    category (fractions rounded to 4 decimals, ``None`` for an empty category)."""
    train = {pid: p for pid, p in problems.items() if p["split"] == "train"}
    test = {pid: p for pid, p in problems.items() if p["split"] == "test"}

    def rounded(acc: Mapping[str, float | None]) -> dict[str, float | None]:
        return {c: (None if v is None else round(v, 4)) for c, v in acc.items()}

    return {
        "fitted_on": "train",
        "scored_on": "test",
        "random_choice_accuracy": rounded(scienceqa_random_accuracy(test)),
        "question_only_accuracy": rounded(scienceqa_accuracy(scienceqa_question_only_predictions(train, test), test)),
    }
