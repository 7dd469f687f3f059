"""Caption scorer: same numbers as pycocoevalcap's COCOEvalCap on the same files; SPICE/METEOR never made up."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import vict.eval.captioning as captioning
from vict.eval.captioning import CAPTION_METRICS, FAST_CAPTION_METRICS, score_captions
from vict.eval.predictions import ScoreError

KEYS = {"BLEU-1": "Bleu_1", "BLEU-2": "Bleu_2", "BLEU-3": "Bleu_3", "BLEU-4": "Bleu_4", "METEOR": "METEOR"}
KEYS |= {"ROUGE-L": "ROUGE_L", "CIDEr": "CIDEr"}


class _Skipped:
    """Stands in for a pycocoevalcap scorer that the reference run must not start (SPICE downloads CoreNLP)."""

    def method(self) -> str:
        return "skipped"

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        return math.nan, [math.nan] * len(gts)


def _reference_scores(monkeypatch: pytest.MonkeyPatch, pred: Path, ann: Path, with_meteor: bool) -> dict:
    """COCO(ann) -> loadRes(pred) -> COCOEvalCap.evaluate(), the path LAVIS and BLIP use."""
    import pycocoevalcap.eval as cocoeval
    from pycocotools.coco import COCO

    monkeypatch.setattr(cocoeval, "Spice", _Skipped)
    if not with_meteor:
        monkeypatch.setattr(cocoeval, "Meteor", _Skipped)
    coco = COCO(str(ann))
    evaluator = cocoeval.COCOEvalCap(coco, coco.loadRes(str(pred)))
    evaluator.evaluate()
    return evaluator.eval


def _check_parity(ours: dict, ref: dict, metrics: tuple[str, ...]) -> None:
    for m in metrics:
        assert ours[m] == pytest.approx(ref[KEYS[m]], rel=1e-9, abs=1e-14), m  # pycocoevalcap's own scale


def test_same_numbers_as_cocoevalcap(monkeypatch: pytest.MonkeyPatch, caption_files: tuple[Path, Path]) -> None:
    pred, ann = caption_files
    ours = score_captions(json.loads(pred.read_text()), json.loads(ann.read_text()), metrics=FAST_CAPTION_METRICS)
    ref = _reference_scores(monkeypatch, pred, ann, with_meteor=False)
    _check_parity(ours, ref, FAST_CAPTION_METRICS)
    assert ours["n"] == 4 and 0 < ours["BLEU-1"] <= 1 and ours["CIDEr"] > 0
    assert ours["METEOR"] is None and ours["notes"]["METEOR"].startswith("not requested")
    assert set(CAPTION_METRICS) <= set(ours)


@pytest.mark.slow
def test_same_numbers_as_cocoevalcap_with_meteor(
    monkeypatch: pytest.MonkeyPatch, caption_files: tuple[Path, Path]
) -> None:
    pred, ann = caption_files
    ours = score_captions(json.loads(pred.read_text()), json.loads(ann.read_text()))
    ref = _reference_scores(monkeypatch, pred, ann, with_meteor=True)
    _check_parity(ours, ref, (*FAST_CAPTION_METRICS, "METEOR"))


def test_perfect_prediction_scores_full_bleu(coco_captions: dict) -> None:
    ann = coco_captions
    preds = [{"image_id": a["image_id"], "caption": a["caption"]} for a in ann["annotations"][::5]]
    out = score_captions(preds, ann, metrics=["BLEU-1", "BLEU-4", "ROUGE-L"])
    assert out["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert out["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)


def test_spice_is_null_with_reason_when_corenlp_missing(
    monkeypatch: pytest.MonkeyPatch, coco_captions: dict, coco_results: list[dict]
) -> None:
    monkeypatch.setattr(captioning, "spice_unavailable_reason", lambda: "missing stanford-corenlp-3.6.0.jar. install")
    out = score_captions(coco_results, coco_captions, metrics=["BLEU-1", "SPICE"])
    assert out["SPICE"] is None and "stanford-corenlp-3.6.0.jar" in out["notes"]["SPICE"]


def test_spice_reason_names_the_jar_and_the_fix() -> None:
    reason = captioning.spice_unavailable_reason()
    lib = captioning._pycocoevalcap_dir() / "spice" / "lib"
    if (lib / "stanford-corenlp-3.6.0.jar").is_file():
        pytest.skip("CoreNLP jars installed here: SPICE is attempted")
    assert reason is not None and "get_stanford_models" in reason and "Java 8" in reason


def test_bad_input_names_the_problem(coco_captions: dict, coco_results: list[dict]) -> None:
    ann, preds = coco_captions, coco_results
    with pytest.raises(ScoreError, match=r"no caption for 1 of 4 annotated images"):
        score_captions(preds[:3], ann)
    assert score_captions(preds[:3], ann, metrics=["BLEU-1"], restrict_to_predictions=True)["n"] == 3
    with pytest.raises(ScoreError, match="duplicate image_id"):
        score_captions([*preds, preds[0]], ann)
    with pytest.raises(ScoreError, match="not in the annotations"):
        score_captions([*preds, {"image_id": 99, "caption": "x"}], ann)
    with pytest.raises(ScoreError, match="unknown caption metrics"):
        score_captions(preds, ann, metrics=["BLEU-5"])
