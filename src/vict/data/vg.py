"""Visual Genome ``image_data.json``: the map from VG (= GQA train/val) image ids to COCO image ids."""

from __future__ import annotations

from pathlib import Path

from vict.data.jsonio import iter_array_items
from vict.data.policy import BadInputPolicy, MissingFieldError, resolve_policy


def load_vg_coco_ids(path: str | Path, *, policy: BadInputPolicy | str | None = None) -> dict[str, str]:
    """``{vg_image_id: coco_id}`` (both decimal strings) for every VG image that has a COCO id.

    ``coco_id`` null or negative (some records carry -1) means "not in COCO" and is left out. The file
    is a list of ``{"image_id", "coco_id", "flickr_id", "url", "width", "height"}`` (108,077 images).
    """
    path = Path(path)
    policy = resolve_policy(policy)
    out: dict[str, str] = {}
    for i, item in enumerate(iter_array_items(path)):
        if not isinstance(item, dict) or "image_id" not in item:
            policy.handle(MissingFieldError(f"{path}: item [{i}] has no 'image_id'; is this VG image_data.json?"))
            continue
        coco = item.get("coco_id")
        if coco is not None and int(coco) >= 0:
            out[str(item["image_id"])] = str(int(coco))
    return out
