"""Tiny COCO / GQA / VG files in the official formats (and their images), for the real-data evaluation tests.

Layout written under a root folder::

    coco/images/val2014/COCO_val2014_000000000042.jpg, ..._000000000073.jpg
    coco/annotations/captions_val2014.json          official COCO captions
    coco/annotations/dataset_coco.json              Karpathy (both images in the test split)
    coco/annotations/coco_karpathy_test.json        LAVIS
    gqa/images/2354786.jpg 2354787.jpg n161313.jpg
    gqa/val_balanced_questions.json                 GQA (VG ids 2354786 = COCO 42, 2354787 not in COCO)
    gqa/testdev_balanced_questions.json             GQA testdev (image n161313, no COCO captions)
    vg/image_data.json                              VG image_data.json
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

CAPTIONS = {
    42: ["A red circle on the left.", "a small red circle", "There is a red circle."],
    73: ["Two blue squares.", "two squares that are blue", "A pair of blue squares!"],
}


def _q(image_id: str, question: str, answer: str, full: str, structural: str, semantic: str, balanced=True) -> dict:
    return {
        "imageId": image_id,
        "question": question,
        "answer": answer,
        "fullAnswer": full,
        "isBalanced": balanced,
        "types": {"structural": structural, "semantic": semantic, "detailed": f"{semantic}Detail"},
        "annotations": {"question": {}, "answer": {}, "fullAnswer": {}},
        "semantic": [],
        "semanticStr": "",
        "equivalent": [],
        "entailed": [],
        "groups": {"global": None, "local": None},
    }


VAL_QUESTIONS = {
    "201": _q("2354786", "What color is the circle?", "red", "The circle is red.", "query", "attr"),
    "202": _q("2354786", "Is there a square?", "no", "No, there is no square.", "verify", "obj"),
    "203": _q("2354786", "Is the circle big?", "no", "No, the circle is small.", "verify", "attr", balanced=False),
    "204": _q("2354787", "How many shapes are there?", "2", "There are 2 shapes.", "query", "obj"),
}
TESTDEV_QUESTIONS = {
    "t1": _q("n161313", "What shape is green?", "triangle", "The triangle is green.", "query", "cat"),
    "t2": _q("n161313", "Is the triangle green?", "yes", "Yes, the triangle is green.", "verify", "attr"),
}


def write_real_files(root: Path) -> dict[str, Path]:
    """Write the files above under ``root``; returns their paths by short name."""
    coco_img = root / "coco" / "images" / "val2014"
    gqa_img = root / "gqa" / "images"
    for folder in (coco_img, gqa_img, root / "coco" / "annotations", root / "vg"):
        folder.mkdir(parents=True, exist_ok=True)
    colours = {42: (220, 30, 30), 73: (30, 60, 220)}
    for cid, colour in colours.items():
        Image.new("RGB", (48, 40), colour).save(coco_img / f"COCO_val2014_{cid:012d}.jpg")
    for name, colour in [("2354786", (220, 40, 40)), ("2354787", (40, 40, 220)), ("n161313", (20, 200, 20))]:
        Image.new("RGB", (40, 48), colour).save(gqa_img / f"{name}.jpg")
    official = {
        "info": {},
        "licenses": [],
        "images": [{"id": cid, "file_name": f"COCO_val2014_{cid:012d}.jpg"} for cid in CAPTIONS],
        "annotations": [
            {"image_id": cid, "id": 1000 * cid + k, "caption": c}
            for cid, caps in CAPTIONS.items()
            for k, c in enumerate(caps)
        ],
    }
    karpathy = {
        "dataset": "coco",
        "images": [
            {
                "filepath": "val2014",
                "filename": f"COCO_val2014_{cid:012d}.jpg",
                "cocoid": cid,
                "split": "test",
                "sentences": [{"raw": c, "tokens": c.lower().split()} for c in caps],
            }
            for cid, caps in CAPTIONS.items()
        ],
    }
    lavis = [{"image": f"val2014/COCO_val2014_{cid:012d}.jpg", "caption": caps} for cid, caps in CAPTIONS.items()]
    vg = [
        {"image_id": 2354786, "coco_id": 42, "flickr_id": None, "url": "", "width": 40, "height": 48},
        {"image_id": 2354787, "coco_id": None, "flickr_id": 5, "url": "", "width": 40, "height": 48},
    ]
    paths = {
        "captions": root / "coco" / "annotations" / "captions_val2014.json",
        "karpathy": root / "coco" / "annotations" / "dataset_coco.json",
        "lavis": root / "coco" / "annotations" / "coco_karpathy_test.json",
        "val_questions": root / "gqa" / "val_balanced_questions.json",
        "testdev_questions": root / "gqa" / "testdev_balanced_questions.json",
        "vg": root / "vg" / "image_data.json",
    }
    for key, payload in [
        ("captions", official),
        ("karpathy", karpathy),
        ("lavis", lavis),
        ("val_questions", VAL_QUESTIONS),
        ("testdev_questions", TESTDEV_QUESTIONS),
        ("vg", vg),
    ]:
        paths[key].write_text(json.dumps(payload))
    paths["coco_images"] = coco_img
    paths["coco_root"] = root / "coco" / "images"
    paths["gqa_images"] = gqa_img
    return paths
