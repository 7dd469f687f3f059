"""COCO caption metrics through pycocoevalcap's own scorers, called one by one.

``COCOEvalCap.evaluate()`` always constructs ``Spice()``, which downloads Stanford CoreNLP when its jars are absent
and needs Java 8; calling the scorers directly (the same PTB tokenisation, ``Bleu(4)``, ``Meteor``, ``Rouge``,
``Cider``, in the same order and on the same ``gts``/``res`` dicts) gives identical numbers and lets SPICE be
attempted only when it can run. A metric that cannot be computed is ``None`` and ``notes[metric]`` says why and how
to fix it; no number is ever made up.

Speed without changing a number: both sides are PTB-tokenised in one Java call (``tokenize_pairs``), and METEOR's
JVM (about 20 s to load its paraphrase table) is started once per process, early (``prewarm_meteor``), and reused
by every later call.

Scores are pycocoevalcap's own numbers, on its 0-1 scale (CIDEr may exceed 1; the BLIP-2 paper's Table 1 CIDEr
1.270 is 1.27 here), in every machine-readable output (``report.json``, ``vict score caption --out``). Only the
markdown tables show them x100 (BLEU-4 43.8, CIDEr 127.0), under a header that says so (``as_x100``).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vict.eval.predictions import ScoreError, index_predictions

CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")


def as_x100(scores: Mapping[str, Any], metrics: Sequence[str] = CAPTION_METRICS) -> dict[str, float | None]:
    """``scores``' caption metrics x100 (the papers' printed convention), for markdown tables only."""
    return {m: None if scores.get(m) is None else round(100.0 * float(scores[m]), 2) for m in metrics}


"""Report keys, in the order pycocoevalcap computes them."""

FAST_CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")
"""Metrics that need no extra JVM beyond the tokenizer (METEOR's JVM loads a paraphrase table, ~20 s)."""

SPICE_INSTALL_HINT = (
    "SPICE needs Stanford CoreNLP 3.6.0 (stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar) in "
    "{lib} and Java 8. Install with network access: python -c 'from pycocoevalcap.spice.get_stanford_models "
    "import get_stanford_models; get_stanford_models()' (downloads stanford-corenlp-full-2015-12-09.zip)"
)


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap.bleu.bleu as bleu_module

    return Path(bleu_module.__file__).resolve().parent.parent


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here (missing Java or CoreNLP jars), or ``None`` when it can be attempted."""
    lib = _pycocoevalcap_dir() / "spice" / "lib"
    if shutil.which("java") is None:
        return "java is not on PATH; SPICE needs Java 8. " + SPICE_INSTALL_HINT.format(lib=lib)
    missing = [
        n for n in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar") if not (lib / n).is_file()
    ]
    if missing:
        return f"missing {', '.join(missing)}. " + SPICE_INSTALL_HINT.format(lib=lib)
    return None


def caption_references(annotations: Mapping[str, Any]) -> dict[str, list[str]]:
    """COCO captions file -> ``{str(image_id): [caption, ...]}`` over ``images`` (every GT image, as COCOEvalCap).

    Raises:
        ScoreError: no ``annotations`` key, a record without ``image_id``/``caption``, or an image with no caption.
    """
    if not isinstance(annotations, Mapping) or "annotations" not in annotations:
        raise ScoreError("caption annotations: expected a COCO captions file (a dict with 'annotations' and 'images')")
    refs: dict[str, list[str]] = {}
    for img in annotations.get("images", []):
        refs.setdefault(str(img["id"]), [])
    for k, ann in enumerate(annotations["annotations"]):
        if "image_id" not in ann or "caption" not in ann:
            raise ScoreError(f"caption annotations: record #{k} needs 'image_id' and 'caption'; got {sorted(ann)}")
        refs.setdefault(str(ann["image_id"]), []).append(str(ann["caption"]))
    empty = [i for i, caps in refs.items() if not caps]
    if empty:
        raise ScoreError(f"caption annotations: {len(empty)} images have no caption (e.g. {empty[:5]})")
    return refs


def score_captions(
    predictions: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, Any],
    metrics: Sequence[str] | None = None,
    restrict_to_predictions: bool = False,
) -> dict[str, Any]:
    """Score captions with pycocoevalcap.

    Args:
        predictions: ``[{"image_id": int | str, "caption": str}]`` (COCO results format), one per image.
        annotations: a COCO captions file ``{"images": [{"id"}], "annotations": [{"image_id", "caption"}]}``.
        metrics: subset of ``CAPTION_METRICS`` to compute (default all); the others are ``None`` with a note.
        restrict_to_predictions: score only the images that have a prediction (LAVIS's ``img_ids``); by default
            every annotated image needs one, as ``COCOEvalCap`` asserts.

    Returns:
        ``{metric: float | None for metric in CAPTION_METRICS}`` (pycocoevalcap's scale) plus ``"n"`` (images
        scored) and
        ``"notes"`` (``{metric: reason}`` for every ``None``).

    Raises:
        ScoreError: duplicate prediction ids, predictions for unknown images, missing predictions, no Java.
    """
    wanted = list(CAPTION_METRICS if metrics is None else metrics)
    bad = [m for m in wanted if m not in CAPTION_METRICS]
    if bad:
        raise ScoreError(f"unknown caption metrics {bad}; choose from {list(CAPTION_METRICS)}")
    refs = caption_references(annotations)
    preds = index_predictions(predictions, id_key="image_id", value_key="caption", what="caption predictions")
    unknown = sorted(set(preds) - set(refs))
    if unknown:
        raise ScoreError(
            f"caption predictions: {len(unknown)} image_ids are not in the annotations (e.g. {unknown[:5]}); "
            "pycocotools rejects these too ('Results do not correspond to current coco set')"
        )
    if restrict_to_predictions:
        refs = {i: refs[i] for i in refs if i in preds}
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise ScoreError(
            f"caption predictions: no caption for {len(missing)} of {len(refs)} annotated images "
            f"(e.g. {missing[:5]}); predict every image or pass restrict_to_predictions=True (--subset)"
        )
    if not refs:
        raise ScoreError("caption predictions: nothing to score (no predictions)")
    if shutil.which("java") is None:
        raise ScoreError("caption scoring needs Java (pycocoevalcap's PTB tokenizer is a jar); install a JRE")

    gts, res = tokenize_pairs(refs, {i: preds[i] for i in refs})

    out: dict[str, Any] = dict.fromkeys(CAPTION_METRICS)
    notes: dict[str, str] = {
        m: "not requested (skipped, e.g. with --fast)" for m in CAPTION_METRICS if m not in wanted
    }
    if any(m.startswith("BLEU") for m in wanted):
        from pycocoevalcap.bleu.bleu import Bleu

        with contextlib.redirect_stdout(io.StringIO()):  # BleuScorer prints its length statistics
            bleu, _ = Bleu(4).compute_score(gts, res)
        for n, value in enumerate(bleu, start=1):
            if f"BLEU-{n}" in wanted:
                out[f"BLEU-{n}"] = float(value)
    if "METEOR" in wanted:
        out["METEOR"], reason = _meteor(gts, res)
        if reason:
            notes["METEOR"] = reason
    if "ROUGE-L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr" in wanted:
        from pycocoevalcap.cider.cider import Cider

        out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if "SPICE" in wanted:
        out["SPICE"], reason = _spice(gts, res)
        if reason:
            notes["SPICE"] = reason
    out["n"] = len(refs)
    out["notes"] = notes
    return out


def tokenize_pairs(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """PTB-tokenise references and predictions in ONE Java call (``COCOEvalCap`` starts two JVMs).

    The Stanford tokenizer runs with ``-preserveLines`` (one output line per input line, each tokenised alone), so
    tokenising both sides together gives exactly the tokens of two separate ``PTBTokenizer().tokenize`` calls.

    Returns:
        ``(gts, res)``: ``{id: [tokenised reference, ...]}`` and ``{id: [tokenised prediction]}``, the dicts the
        pycocoevalcap scorers take.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    both = {("gts", i): [{"caption": c} for c in caps] for i, caps in references.items()}
    both |= {("res", i): [{"caption": c}] for i, c in predictions.items()}
    tokens = PTBTokenizer().tokenize(both)
    gts = {i: tokens[("gts", i)] for i in references}
    res = {i: tokens[("res", i)] for i in predictions}
    return gts, res


_METEOR_LOCK = threading.Lock()
_METEOR: Any = None


def prewarm_meteor() -> None:
    """Start the shared METEOR JVM now, in the background (it loads a paraphrase table for ~20 s).

    ``vict eval`` calls this before generating, so the JVM loads while the model runs; every later
    ``score_captions`` in this process reuses the same JVM (its scores are per call: no state carries over).
    Does nothing when Java is missing (scoring then reports METEOR as unavailable).
    """
    if shutil.which("java") is None:
        return
    with contextlib.suppress(Exception):
        _meteor_scorer()


def _meteor_scorer() -> Any:
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is None or _METEOR.meteor_p.poll() is not None:
            from pycocoevalcap.meteor.meteor import Meteor

            _METEOR = Meteor()  # Popen returns at once; the JVM loads while the caller goes on
        return _METEOR


def close_meteor() -> None:
    """Stop the shared METEOR JVM (also done at interpreter exit)."""
    global _METEOR
    with _METEOR_LOCK:
        scorer, _METEOR = _METEOR, None
    if scorer is not None:
        with contextlib.suppress(Exception):
            scorer.meteor_p.stdin.close()
        with contextlib.suppress(Exception):
            scorer.meteor_p.kill()
            scorer.meteor_p.wait(timeout=10)
        if scorer.lock.locked():  # a call that failed midway keeps pycocoevalcap's lock; its __del__ would hang
            scorer.lock.release()


atexit.register(close_meteor)


def _meteor(gts: dict, res: dict) -> tuple[float | None, str | None]:
    try:
        value = float(_meteor_scorer().compute_score(gts, res)[0])
        return value, None
    except Exception as e:  # the jar runs in a subprocess: report, never guess
        close_meteor()  # a broken pipe leaves the scorer unusable: the next call starts a fresh JVM
        return None, f"METEOR failed: {type(e).__name__}: {e} (it needs Java and ~2 GB of heap for meteor-1.5.jar)"


def _spice(gts: dict, res: dict) -> tuple[float | None, str | None]:
    reason = spice_unavailable_reason()
    if reason:
        return None, reason
    try:
        from pycocoevalcap.spice.spice import Spice

        return float(Spice().compute_score(gts, res)[0]), None
    except Exception as e:  # Java >= 9 typically fails here ("Unable to make field ... accessible")
        return None, f"SPICE failed to run: {type(e).__name__}: {e}. SPICE needs Java 8 (found another version?)"
