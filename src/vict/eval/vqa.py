"""Official VQA v2 accuracy and the VQA answer normalisation (GT-Vision-Lab ``vqaEval.py``), as pure functions.

The normalisation reproduces the official script with its quirks, because published numbers depend on them:

- ``process_punctuation`` tests each of the 21 punctuation marks against the *original* text; a mark is deleted when
  it touches a space or when the text contains a digit-comma-digit anywhere (the ``commaStrip`` trigger), and is
  otherwise replaced by a space. Periods are then removed by ``periodStrip``, whose look-behind is mistyped as a
  look-ahead (so it removes every period not followed by a digit) and whose ``re.UNICODE`` flag is passed as the
  ``count`` argument (so at most 32 periods go).
- ``process_digit_article`` lower-cases, maps number words to digits, drops articles and restores apostrophes from the
  120-entry contraction table (whose capitalised keys can never match).
- Human answers and the prediction are normalised **only when the humans disagree** (``len(set(answers)) > 1``).
- Accuracy of one question is ``min(1, matches / 3)`` averaged over the 10 leave-one-out subsets of 9 humans.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from vict.eval.predictions import ScoreError, index_predictions

PUNCT: list[str] = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
"""The 21 punctuation marks of the official script, in its order (apostrophe, colon and period are not in it)."""

COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
"""Digit-comma-digit anywhere in the text makes ``process_punctuation`` delete (not space out) every mark."""

PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
"""The official regex, verbatim: its first group is a look-ahead for ``<=\\d``, so it matches every period not
followed by a digit."""

_PERIOD_STRIP_COUNT = re.UNICODE
"""The official call is ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in ``count`` (= 32)."""

MANUAL_MAP: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

ARTICLES: list[str] = ["a", "an", "the"]

# fmt: off
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
# fmt: on


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: delete or space out the 21 marks, then strip periods (quirks kept)."""
    out = text
    delete_all = COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        # The condition looks at the original text, not at `out`: that is the official behaviour.
        if (p + " " in text or " " + p in text) or delete_all:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, _PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words to digits, drop articles, fix contractions."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """``process_digit_article(process_punctuation(text))``: the normalisation both VQA and GQA-`vqa` rules use."""
    return process_digit_article(process_punctuation(text))


def _clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Accuracy in [0, 1] of one prediction against the human answers (10 in VQA v2), by the official algorithm.

    Both sides are normalised only if the humans disagree; each human is left out in turn and the prediction earns
    ``min(1, #remaining humans who gave it / 3)``; the result is the mean over those subsets. With ``k`` of 10 humans
    agreeing with the prediction this gives 0, 0.3, 0.6, 0.9, 1.0 for k = 0, 1, 2, 3, >=4.

    The official script removes "the" current answer by comparing whole answer dicts, which differ by ``answer_id``;
    leaving out by position is the same thing.
    """
    if not human_answers:
        raise ScoreError("vqa_accuracy needs at least one human answer; got an empty list")
    answers = [_clean_whitespace(a) for a in human_answers]
    pred = _clean_whitespace(prediction)
    if len(set(answers)) > 1:
        answers = [normalize_answer(a) for a in answers]
        pred = normalize_answer(pred)
    accs = []
    for i in range(len(answers)):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == pred)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def _annotation_list(annotations: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(annotations, Mapping):
        if "annotations" not in annotations:
            raise ScoreError(
                "VQA annotations: expected the official file (a dict with key 'annotations', e.g. "
                f"v2_mscoco_val2014_annotations.json); got keys {sorted(annotations)[:8]}"
            )
        return list(annotations["annotations"])
    return list(annotations)


def _question_ids(questions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> set[int] | None:
    if questions is None:
        return None
    items = questions["questions"] if isinstance(questions, Mapping) and "questions" in questions else questions
    if isinstance(items, Mapping):
        raise ScoreError("VQA questions: expected the official file (a dict with key 'questions'); got another dict")
    return {int(q["question_id"]) for q in items}


def score_vqav2(
    predictions: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    questions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    precision: int = 2,
) -> dict[str, Any]:
    """Score VQA v2 results with the official rules.

    Args:
        predictions: ``[{"question_id": int, "answer": str}]`` (the official results format).
        annotations: the official annotations file (``{"annotations": [...]}``) or its list; each entry needs
            ``question_id``, ``answers`` (list of ``{"answer": str, ...}``), ``answer_type`` and ``question_type``.
        questions: the official questions file; when given, its question ids must equal the annotations' ids.
        precision: decimals of the rounded percentages (official default 2).

    Returns:
        ``{"overall": float, "per_answer_type": {type: float}, "per_question_type": {type: float}, "n": int}``,
        accuracies in percent rounded like the official script (``round(100 * mean, precision)``).

    Raises:
        ScoreError: duplicate or missing prediction ids, predictions for unknown questions, malformed records.
    """
    anns = _annotation_list(annotations)
    ann_by_id: dict[int, Mapping[str, Any]] = {}
    for k, ann in enumerate(anns):
        for key in ("question_id", "answers"):
            if key not in ann:
                raise ScoreError(f"VQA annotation #{k}: missing key {key!r} (have {sorted(ann)})")
        qid = int(ann["question_id"])
        if qid in ann_by_id:
            raise ScoreError(f"VQA annotations: question_id {qid} appears twice")
        ann_by_id[qid] = ann
    qids = _question_ids(questions)
    if qids is not None and qids != set(ann_by_id):
        only_q = sorted(qids - set(ann_by_id))[:5]
        only_a = sorted(set(ann_by_id) - qids)[:5]
        raise ScoreError(
            "VQA questions and annotations do not match: "
            f"{len(qids - set(ann_by_id))} ids only in questions (e.g. {only_q}), "
            f"{len(set(ann_by_id) - qids)} only in annotations (e.g. {only_a}); pass the files of the same split"
        )
    preds = index_predictions(predictions, id_key="question_id", value_key="answer", cast=int, what="VQA predictions")
    unknown = sorted(set(preds) - set(ann_by_id))
    if unknown:
        raise ScoreError(
            f"VQA predictions: {len(unknown)} question ids are not in the annotations (e.g. {unknown[:5]}); "
            "predictions and annotations must come from the same split"
        )
    missing = sorted(set(ann_by_id) - set(preds))
    if missing:
        raise ScoreError(
            f"VQA predictions: missing predictions for {len(missing)} of {len(ann_by_id)} questions "
            f"(e.g. {missing[:5]}); the official tool scores every annotated question"
        )
    per_q: list[float] = []
    by_ans: dict[str, list[float]] = defaultdict(list)
    by_ques: dict[str, list[float]] = defaultdict(list)
    for qid, ann in ann_by_id.items():
        acc = vqa_accuracy(preds[qid], [a["answer"] for a in ann["answers"]])
        per_q.append(acc)
        by_ans[str(ann.get("answer_type", "unknown"))].append(acc)
        by_ques[str(ann.get("question_type", "unknown"))].append(acc)

    def pct(values: list[float]) -> float:
        return round(100 * float(sum(values)) / len(values), precision)

    return {
        "overall": pct(per_q) if per_q else 0.0,
        "per_answer_type": {k: pct(v) for k, v in sorted(by_ans.items())},
        "per_question_type": {k: pct(v) for k, v in sorted(by_ques.items())},
        "n": len(per_q),
    }
