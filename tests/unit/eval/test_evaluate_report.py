"""Report assembly (reused by the quickstart for several models) and the sentence-answer score."""

from __future__ import annotations

import json
from pathlib import Path

from vict.eval.evaluation_report import write_report
from vict.eval.splits import EvalQuestion, gold_captions
from vict.recipes.evaluate import _sentence_scores


def _report(name: str, kind: str, acc: float) -> dict:
    gqa = {"accuracy": acc, "by_structural": {"query": acc}, "by_semantic": {"attr": acc}, "n": 4}
    caption = dict.fromkeys(["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"], acc)
    caption |= {"METEOR": None, "SPICE": None, "n": 2, "notes": {"SPICE": "missing stanford-corenlp-3.6.0.jar"}}
    return {
        "model": name,
        "kind": kind,
        "data": "world",
        "split": "test",
        "caption": caption,
        "gqa": {s: {"vqa": gqa, "official": gqa | {"accuracy": acc / 2}} for s in ("none", "caption", "self")},
        "gqa_sentence": {"exact": 10.0, "answer_in_sentence": 50.0, "n": 4} if kind == "vict" else None,
        "choices": {"gold_caption": "first non-dense", "self_caption": "own"},
    }


def test_combined_report_has_a_row_per_model(tmp_path: Path) -> None:
    reports = {"BLIP-2 (tiny)": _report("BLIP-2 (tiny)", "blip2", 40.0), "VICT (lora)": _report("VICT", "vict", 75.0)}
    json_path, md_path = write_report(reports, tmp_path, title="Quickstart")
    assert json.loads(json_path.read_text())["models"].keys() == reports.keys()
    md = md_path.read_text()
    assert md.startswith("# Quickstart")
    table2 = md.split("rule `vqa`, normalised")[1].split("##")[0]
    assert "| BLIP-2 (tiny) | 40.00 | 40.00   | 40.00 |" in table2 and "| VICT (lora)   | 75.00" in table2
    assert "| VICT (lora)   | 37.50" in md.split("rule `official`")[1]  # official-rule row
    assert "missing stanford-corenlp-3.6.0.jar" in md and "n/a" in md
    assert "BLIP-2 (tiny): no sentence-answer score" in md


def test_sentence_scores_hand_computed() -> None:
    qs = [
        EvalQuestion("1", 0, "is there a circle?", "no", "No, there is no circle."),
        EvalQuestion("2", 0, "what color is the square?", "red", "The square is red."),
        EvalQuestion("3", 0, "how many?", "2", "There are 2 shapes."),
        EvalQuestion("4", 0, "is it big?", "yes", "Yes, it is big."),
    ]
    preds = ["There is no circle.", "the square is red", "There are two shapes.", "Yes, it is big."]
    out = _sentence_scores(preds, qs)
    # exact: questions 2 (case and period normalised), 3 ("two" -> "2") and 4; answer_in_sentence: 2, 3 and 4
    # ("no" must be the first word for yes/no answers, so "There is no circle." does not count for question 1).
    assert out == {"exact": 75.0, "answer_in_sentence": 75.0, "n": 4}


def test_gold_caption_skips_dense_and_falls_back() -> None:
    coco = {
        "annotations": [
            {"image_id": 1, "caption": "dense one", "dense": True},
            {"image_id": 1, "caption": "plain one"},
            {"image_id": 1, "caption": "plain two"},
            {"image_id": 2, "caption": "only dense", "dense": True},
            {"image_id": 3, "caption": "coco style"},
        ]
    }
    assert gold_captions(coco) == {"1": "plain one", "2": "only dense", "3": "coco style"}
