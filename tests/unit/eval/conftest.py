"""Small COCO-format caption files shared by the caption-scorer and `vict score` tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFS = {
    11: ["A red circle on the left.", "a small red circle", "There is a red circle.", "red round shape", "A circle."],
    12: ["Two blue squares.", "two squares that are blue", "A pair of blue squares!", "blue squares", "Squares."],
    13: ["A green triangle above a circle.", "green triangle", "a triangle and a circle", "A triangle.", "shapes"],
    14: ["A yellow star in the middle", "a star", "one yellow star", "The star is yellow.", "yellow shape"],
}
PREDS = {11: "a red circle", 12: "two blue squares on the right", 13: "a green circle", 14: "a yellow star"}


def _coco_captions() -> dict:
    """A COCO captions file over ``REFS`` (ids of captions unique across the file)."""
    anns, k = [], 0
    for image_id, caps in REFS.items():
        for cap in caps:
            k += 1
            anns.append({"image_id": image_id, "id": k, "caption": cap})
    images = [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64} for i in REFS]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns}


def _coco_results() -> list[dict]:
    return [{"image_id": i, "caption": c} for i, c in PREDS.items()]


@pytest.fixture
def caption_files(tmp_path: Path) -> tuple[Path, Path]:
    """(predictions.json, annotations.json) written to a temporary folder."""
    ann, pred = tmp_path / "captions_test.json", tmp_path / "results.json"
    ann.write_text(json.dumps(_coco_captions()))
    pred.write_text(json.dumps(_coco_results()))
    return pred, ann


@pytest.fixture
def coco_captions() -> dict:
    """A COCO captions file (dict) over four images with five references each."""
    return _coco_captions()


@pytest.fixture
def coco_results() -> list[dict]:
    """COCO results (one predicted caption per image of ``coco_captions``)."""
    return _coco_results()
