"""ScienceQA: answer extraction and the official category accuracies (ScienceQA ``tools/evaluate_acc.py``).

Extraction (``extract_answer_letter``): the first match of ``The answer is ([A-Z]).`` (LaVIN's rule; the GPT-3 script
wants exactly one match), else LLaVA's short forms: the whole text is one letter ``A``..``E``, or it starts with a
letter and ``". "`` (``"B. Louisiana"``). A letter beyond the problem's choices is invalid. An invalid or failed
answer becomes, by ``failed``:

- ``"random"`` (default, the reference's ``get_pred_idx``): a random choice index, drawn from
  ``random.Random(f"{seed}:{pid}")`` so a pid's draw does not depend on which other answers failed or on order;
- ``"wrong"`` (LLaVA's ``get_pred_idx``): ``-1``, which never equals the answer.

Scoring (``score_scienceqa``) follows ``get_scores``: over the split's problems, NAT/SOC/LAN by ``subject``, TXT =
non-empty hint, IMG = has an image (a problem with both counts in both), NO = neither, G1-6 / G7-12 by grade,
Average = correct / all problems of the split, plus per-topic accuracies. Accuracies are unrounded percentages
(the reference prints ``"{:.2f}"``); a category with no problems is ``None`` (the reference gives -1).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vict.data.scienceqa import OPTIONS, SUBJECTS, ScienceQAProblem
from vict.eval.predictions import ScoreError

FailedRule = Literal["random", "wrong"]
FAILED_RULES: tuple[str, ...] = ("random", "wrong")
FAILED_INDEX = -1
"""The index ``failed="wrong"`` gives an unusable answer (LLaVA's results files hold it too)."""
ANSWER_PATTERN = re.compile(r"The answer is ([A-Z]).")
CATEGORIES: tuple[str, ...] = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Average")
"""The official categories, in the paper's column order."""
MAX_LISTED = 5


def extract_answer_letter(text: str, ignore_case: bool = False) -> str | None:
    """The answer letter of a generated text, or ``None`` when there is none ("FAILED" in the reference).

    Order: the first ``The answer is X.`` match; else the stripped text is exactly one of ``A``..``E``; else the
    stripped text starts with ``A``..``E`` followed by ``". "``. The letter is not checked against the choices here.
    ``ignore_case``: for a model whose tokenizer lowercases every text (it cannot write "The" or "B"), the same
    rules on the upper-cased text; the official rule is case-sensitive, so callers say when they use this.
    """
    if ignore_case:
        text = text.upper().replace("THE ANSWER IS", "The answer is")
    match = ANSWER_PATTERN.search(text)
    if match:
        return match.group(1)
    stripped = text.strip()
    if stripped in OPTIONS:
        return stripped
    if len(stripped) >= 3 and stripped[0] in OPTIONS and stripped[1:3] == ". ":
        return stripped[0]
    return None


def lowercases(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` lowercases every text (its decoded "The answer is B." comes back lower-case)."""
    if tokenizer is None:
        return False
    ids = tokenizer("The answer is B.", add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids).strip() == "the answer is b."


def letter_index(letter: str | None, n_choices: int) -> int | None:
    """``"B"`` -> 1 when the letter is among the first ``n_choices`` options, else ``None`` (invalid)."""
    if letter is None or letter not in OPTIONS[:n_choices]:
        return None
    return OPTIONS.index(letter)


def failed_index(pid: str, n_choices: int, failed: FailedRule = "random", seed: int = 0) -> int:
    """The index an invalid or failed answer of problem ``pid`` is scored as (see the module docstring)."""
    if failed == "wrong":
        return FAILED_INDEX
    if failed == "random":
        return random.Random(f"{seed}:{pid}").randrange(n_choices)
    raise ScoreError(f"unknown ScienceQA failed-answer rule {failed!r}; choose one of {FAILED_RULES}")


@dataclass
class Extraction:
    """Generated texts turned into choice indices: ``results`` ``{pid: index}`` (failed answers already resolved by
    the rule) and ``failed`` (the pids whose text gave no valid letter, in input order)."""

    results: dict[str, int]
    failed: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.failed)


def _check_rule(failed: str) -> None:
    if failed not in FAILED_RULES:
        raise ScoreError(f"unknown ScienceQA failed-answer rule {failed!r}; choose one of {FAILED_RULES}")


def extract_predictions(
    texts: Mapping[str, str],
    problems: Sequence[ScienceQAProblem],
    failed: FailedRule = "random",
    seed: int = 0,
    ignore_case: bool = False,
) -> Extraction:
    """Turn generated texts ``{pid: text}`` into ``{pid: index}`` with ``extract_answer_letter`` (``ignore_case``:
    see there).

    Raises:
        ScoreError: a text is not a string, or a pid is not among ``problems`` (both listed).
    """
    _check_rule(failed)
    by_pid = {p.pid: p for p in problems}
    unknown = sorted(str(pid) for pid in texts if str(pid) not in by_pid)
    if unknown:
        raise ScoreError(
            f"ScienceQA texts: {len(unknown)} pids are not problems of the split (e.g. {unknown[:MAX_LISTED]}); "
            "generate for the same split you score"
        )
    not_text = [str(pid) for pid, t in texts.items() if not isinstance(t, str)]
    if not_text:
        raise ScoreError(
            f"ScienceQA texts: {len(not_text)} outputs are not strings (e.g. pids {not_text[:MAX_LISTED]})"
        )
    out = Extraction(results={})
    for raw_pid, text in texts.items():
        pid, n = str(raw_pid), len(by_pid[str(raw_pid)].choices)
        index = letter_index(extract_answer_letter(text, ignore_case), n)
        if index is None:
            out.failed.append(pid)
            index = failed_index(pid, n, failed, seed)
        out.results[pid] = index
    return out


def prediction_indices(predictions: Mapping[str, Any], what: str = "ScienceQA predictions") -> dict[str, Any]:
    """``{pid: value}`` from either layout: a results file ``{"results": {pid: pred_idx}, ...}`` (the reference's and
    LLaVA's) or a bare ``{pid: pred_idx}``. Values are not checked here."""
    if not isinstance(predictions, Mapping):
        raise ScoreError(
            f'{what}: expected {{"results": {{pid: pred_idx}}}} or {{pid: pred_idx}}; got a {type(predictions).__name__}'
        )
    results = predictions.get("results")
    if isinstance(results, Mapping):
        return {str(k): v for k, v in results.items()}
    return {str(k): v for k, v in predictions.items()}


def _well_formed(value: Any) -> bool:
    """A prediction value is an int (not a bool), a single capital letter, or ``"FAILED"``."""
    if isinstance(value, str):
        return value == "FAILED" or (len(value) == 1 and "A" <= value <= "Z")
    return isinstance(value, int) and not isinstance(value, bool)


def _resolve(value: Any, n_choices: int) -> int | None:
    """A well-formed prediction value as a choice index, or ``None`` for a failed or invalid answer."""
    if isinstance(value, str):
        return None if value == "FAILED" else letter_index(value, n_choices)
    return value if 0 <= value < n_choices else None


def _pct(correct: int, count: int) -> float | None:
    return 100.0 * correct / count if count else None


def _group(verdicts: list[bool]) -> dict[str, Any]:
    return {"accuracy": _pct(sum(verdicts), len(verdicts)), "correct": int(sum(verdicts)), "count": len(verdicts)}


def score_scienceqa(
    predictions: Mapping[str, Any],
    problems: Sequence[ScienceQAProblem],
    failed: FailedRule = "random",
    seed: int = 0,
    allow_missing: bool = False,
    what: str = "ScienceQA predictions",
) -> dict[str, Any]:
    """Official ScienceQA accuracies of predicted choice indices over ``problems`` (one split, ``load_scienceqa``).

    Args:
        predictions: ``{"results": {pid: pred_idx}}`` or ``{pid: pred_idx}``. ``pred_idx`` is a 0-based int or a
            letter ``"A"``..``"E"``. An index outside the problem's choices (LLaVA's ``-1``), a letter beyond them
            or ``"FAILED"`` is a failed answer, scored by ``failed``. Pids outside ``problems`` are ignored (counted
            in ``ignored``), as ``get_scores`` reads only the split's problems.
        problems: the problems of the split scored; the Average is over all of them.
        failed: ``"random"`` (a seeded random choice, the reference) or ``"wrong"`` (LLaVA's -1).
        seed: the seed of the ``random`` rule.
        allow_missing: count a problem without a prediction as a failed answer instead of raising.
        what: how error messages name the predictions (e.g. with the file path).

    Returns:
        ``{"accuracy": Average %, "categories": {NAT..Average: {"accuracy", "correct", "count"}}, "by_topic":
        {topic: {...}}, "n", "correct", "failed", "missing", "ignored", "failed_rule", "seed"}``; ``accuracy`` is
        ``None`` for a category with no problems; ``failed`` counts failed answers including missing ones.

    Raises:
        ScoreError: an unknown rule, a malformed prediction value (listed), or missing predictions without
            ``allow_missing`` (how many, and the first few pids).
    """
    _check_rule(failed)
    preds = prediction_indices(predictions, what)
    bad = [(p.pid, preds[p.pid]) for p in problems if p.pid in preds and not _well_formed(preds[p.pid])]
    if bad:
        raise ScoreError(
            f"{what}: {len(bad)} values are neither a choice index (int) nor a letter 'A'..'E' "
            f"(e.g. {bad[:MAX_LISTED]}); turn generated texts into indices with extract_predictions first"
        )
    missing = [p.pid for p in problems if p.pid not in preds]
    if missing and not allow_missing:
        raise ScoreError(
            f"{what}: missing predictions for {len(missing)} of {len(problems)} problems of the split "
            f"(e.g. {missing[:MAX_LISTED]}); predict every problem, or pass allow_missing=True (--allow-missing) to "
            "count them as failed answers"
        )
    groups: dict[str, list[bool]] = {c: [] for c in CATEGORIES}
    topics: dict[str, list[bool]] = defaultdict(list)
    n_failed = 0
    for p in problems:
        index = _resolve(preds[p.pid], len(p.choices)) if p.pid in preds else None
        if index is None:
            n_failed += 1
            index = failed_index(p.pid, len(p.choices), failed, seed)
        ok = index == p.answer
        groups[SUBJECTS[p.subject]].append(ok)
        if p.has_text:
            groups["TXT"].append(ok)
        if p.has_image:
            groups["IMG"].append(ok)
        if not p.has_text and not p.has_image:
            groups["NO"].append(ok)
        groups["G1-6" if p.grade_number <= 6 else "G7-12"].append(ok)
        groups["Average"].append(ok)
        topics[p.topic].append(ok)
    pids = {p.pid for p in problems}
    categories = {c: _group(v) for c, v in groups.items()}
    return {
        "accuracy": categories["Average"]["accuracy"],
        "categories": categories,
        "by_topic": {t: _group(v) for t, v in sorted(topics.items())},
        "n": len(problems),
        "correct": categories["Average"]["correct"],
        "failed": n_failed,
        "missing": len(missing),
        "ignored": sum(pid not in pids for pid in preds),
        "failed_rule": failed,
        "seed": seed,
    }
