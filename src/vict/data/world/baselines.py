"""Blind baselines: how well a model that never sees the image can answer, fitted on train, scored on test.

Both are pure functions over GQA-format question dicts (``{qid: {"question", "answer", "types", ...}}``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping


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
