"""ScienceQA through an engine: load the official files, ask every problem, extract the letter, score by category.

``evaluate_scienceqa`` reads top to bottom: the problems of a split (``vict.data.scienceqa.load_scienceqa``) -> one
prompt per problem -> greedy completions in batches (the engine's ``complete``) -> the answer letter
(``vict.eval.scienceqa.extract_predictions``: the first ``The answer is X.``; a failed or invalid answer follows the
``failed`` rule) -> the official categories (``score_scienceqa``: NAT, SOC, LAN, TXT, IMG, NO, G1-6, G7-12, Average,
and per topic).

Prompts and text-only problems, by engine kind:

- **VICT** (``kind == "vict"``): ``scienceqa_model_prompt(problem, fmt)``, the prompt a model is trained on (the
  ``<image>`` marker first, or ``Image: N/A`` and no marker); a problem without an image is a text-only row (no image
  slots), batched with the image rows (``TEXT_ONLY_ROWS``).
- **BLIP-2** (``kind == "blip2"``): BLIP-2 has no text-only path, so a problem without an image is given a blank
  (white) image, and the report says so (``"text_only_rows": "blank image"``). Its prompt is the reference's test
  example (``scienceqa_example(problem, fmt, test_example=True)``: ``Question: ... Options: ... Answer:``), since
  BLIP-2 puts its query tokens before the text itself; a bare letter or ``"B. ..."`` answer is extracted too.

This module takes the engine by its interface (``kind``, ``name``, ``complete``, ``release``, ``max_new_tokens``):
``vict.inference`` already imports ``vict.eval``, so it imports nothing from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from vict.data.scienceqa import (
    FORMATS,
    ScienceQAProblem,
    load_scienceqa,
    scienceqa_example,
    scienceqa_model_prompt,
)
from vict.eval.report import write_json
from vict.eval.scienceqa import (
    FAILED_RULES,
    FailedRule,
    extract_answer_letter,
    extract_predictions,
    lowercases,
    score_scienceqa,
)

MAX_NEW_TOKENS = 16
"""Default budget of the letter-first formats (``A``, ``ALE``): ``The answer is X.`` is 5-8 tokens, and the lecture
and solution of ``ALE`` after it are not needed to score."""
REASONING_TOKENS: dict[str, int] = {"EA": 96, "LEA": 320}
"""Default budget of the output formats that write the letter last (after the solution, and the lecture)."""
TEXT_ONLY_ROWS: dict[str, str] = {"vict": "text only (no image slots)", "blip2": "blank image"}
"""What a problem without an image is given, by engine kind (reported as ``text_only_rows``)."""
PROMPTS: dict[str, str] = {
    "vict": "scienceqa_model_prompt (the training prompt: <image> or 'Image: N/A', then LaVIN's Question/Context/"
    "Options ... Response:)",
    "blip2": "scienceqa_example(test_example=True) (the reference's Question/Context/Options ... Answer:)",
}
BLANK_SIZE = 224
"""Side of the blank image BLIP-2 gets for a text-only problem (its processor resizes to its own size anyway)."""


def scienceqa_requests(
    problems: list[ScienceQAProblem], kind: str, fmt: str = "QCM-A"
) -> tuple[list[Path | Image.Image | None], list[str]]:
    """``(images, prompts)`` of the problems for an engine of ``kind`` (see the module docstring); a text-only
    problem's image is ``None`` (VICT) or one shared blank image (BLIP-2, so its features are computed once)."""
    if kind == "vict":
        return [p.image for p in problems], [scienceqa_model_prompt(p, fmt)[0] for p in problems]
    if kind == "blip2":
        blank = Image.new("RGB", (BLANK_SIZE, BLANK_SIZE), (255, 255, 255))
        images = [p.image if p.image is not None else blank for p in problems]
        return images, [scienceqa_example(p, fmt, test_example=True) for p in problems]
    raise ValueError(f"ScienceQA: no prompt for an engine of kind {kind!r}; use a VICT or a BLIP-2 engine")


def evaluate_scienceqa(
    engine: Any,
    problems_json: str | Path,
    split: str = "test",
    pid_splits: str | Path | None = None,
    image_root: str | Path | None = None,
    fmt: str = "QCM-A",
    failed: FailedRule = "random",
    seed: int = 0,
    max_new_tokens: int | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Ask ``engine`` every problem of a ScienceQA split and score the answers by official category.

    Args:
        engine: a ``VictEngine`` or ``Blip2Engine`` (anything with ``kind``, ``name`` and ``complete``).
        problems_json: the official ``problems.json``.
        split: a key of ``pid_splits.json`` (``test``, ``val``, ``minitest``, ...).
        pid_splits / image_root: default ``pid_splits.json`` and ``images/`` beside ``problems_json``.
        fmt: the prompt format (``vict.data.scienceqa.FORMATS``; ``QCM-A`` gives ``The answer is X.``).
        failed / seed: the rule for a failed or invalid answer (``random``: a seeded random choice, the reference;
            ``wrong``: LLaVA's -1).
        max_new_tokens: generation budget (default the engine's own one budget, else ``MAX_NEW_TOKENS``).
        out_dir: where to write ``scienceqa_<split>_predictions.json`` (``{pid: {"text", "pred", "answer",
            "failed"}}``) and ``scienceqa_<split>_results.json`` (the reference's results layout, scorable with
            ``vict score scienceqa``); nothing is written when ``None``.
        limit: ask only the first ``limit`` problems of the split (the scores then cover those).

    Returns:
        ``score_scienceqa``'s dict (``accuracy``, ``categories``, ``by_topic``, ``n``, ``correct``, ``failed``:
        failed extractions, ...) plus ``split``, ``data``, ``format``, ``prompt``, ``text_only_rows``, ``n_image``,
        ``n_text_only``, ``max_new_tokens``, ``predictions`` (the per-pid records) and ``files`` (``{name: path}``).
    """
    problems_json = Path(problems_json)
    problems_err = []
    if fmt not in FORMATS:
        problems_err.append(f"format {fmt!r}: use one of {list(FORMATS)}")
    if failed not in FAILED_RULES:
        problems_err.append(f"failed={failed!r}: use one of {list(FAILED_RULES)}")
    if limit is not None and limit < 1:
        problems_err.append(f"limit={limit}: must be >= 1")
    if problems_err:
        raise ValueError("cannot evaluate ScienceQA:\n  " + "\n  ".join(problems_err))
    problems = load_scienceqa(problems_json, pid_splits, split, image_root)[: limit or None]
    if not problems:
        raise ValueError(f"{problems_json}: split {split!r} has no problems")
    budget = max_new_tokens or getattr(engine, "max_new_tokens", None) or MAX_NEW_TOKENS
    reasoning = REASONING_TOKENS.get(fmt.split("-")[1])
    if not max_new_tokens and reasoning:  # the engine's budget fits answers, not solutions
        budget = max(budget, reasoning)

    # 1. One prompt per problem, greedy completions in batches (text-only and image problems together).
    images, prompts = scienceqa_requests(problems, engine.kind, fmt)
    texts = engine.complete(images, prompts, budget, progress=f"{engine.name}: ScienceQA {split}")
    engine.release()
    outputs = {p.pid: t for p, t in zip(problems, texts)}

    # 2. The letter (first "The answer is X."; failed -> the rule), then the official categories on the same letters.
    # A tokenizer that lowercases every text (the miniature zoo's) cannot write "The answer is B.": then the letter
    # is read case-insensitively, and the report says so.
    tokenizer = getattr(getattr(engine, "model", None), "tokenizer", None)
    ignore_case = lowercases(tokenizer)
    extraction = extract_predictions(outputs, problems, failed, seed, ignore_case=ignore_case)
    failed_pids = set(extraction.failed)
    predictions = {
        p.pid: {
            "text": outputs[p.pid],
            "pred": extraction.results[p.pid],
            "answer": p.answer,
            "failed": p.pid in failed_pids,
        }
        for p in problems
    }
    # Scored on the extracted letters (a failed one as "FAILED"), so the scorer resolves failures by the same rule
    # and seed (the same indices as `pred`) and counts them in `failed`.
    letters = {
        p.pid: ("FAILED" if p.pid in failed_pids else extract_answer_letter(outputs[p.pid], ignore_case))
        for p in problems
    }
    scores = score_scienceqa(letters, problems, failed, seed)

    files: dict[str, str] = {}
    if out_dir is not None:
        out_dir = Path(out_dir)
        files[f"scienceqa_{split}_predictions.json"] = str(
            write_json(out_dir / f"scienceqa_{split}_predictions.json", predictions)
        )
        results = {
            "acc": scores["accuracy"],
            "correct": scores["correct"],
            "count": scores["n"],
            "results": {pid: r["pred"] for pid, r in predictions.items()},
            "outputs": outputs,
        }
        files[f"scienceqa_{split}_results.json"] = str(
            write_json(out_dir / f"scienceqa_{split}_results.json", results)
        )
    n_image = sum(p.has_image for p in problems)
    return {
        **scores,
        "split": split,
        "data": str(problems_json),
        "format": fmt,
        "prompt": PROMPTS[engine.kind],
        "text_only_rows": TEXT_ONLY_ROWS[engine.kind],
        "extraction": (
            "case-insensitive (this model's tokenizer lowercases every text)"
            if ignore_case
            else "official (case-sensitive)"
        ),
        "n_image": n_image,
        "n_text_only": len(problems) - n_image,
        "max_new_tokens": budget,
        "predictions": predictions,
        "files": files,
    }
