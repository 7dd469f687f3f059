"""Visual Genome ``image_data.json``: the map from VG (= GQA train/val) image ids to COCO image ids."""

from __future__ import annotations

from pathlib import Path

from vict.data.fields import Where, is_int, json_type, shown
from vict.data.jsonio import iter_array_items, top_level_kind
from vict.data.policy import BadInputPolicy, DataError, FileShapeError, WrongTypeError, resolve_policy

VG_FIELDS = "{'image_id': int, 'coco_id': int or null, 'flickr_id', 'url', 'width', 'height'}"


def load_vg_coco_ids(path: str | Path, *, policy: BadInputPolicy | str | None = None) -> dict[str, str]:
    """``{vg_image_id: coco_id}`` (both decimal strings) for every VG image that has a COCO id.

    ``coco_id`` null or negative (some records carry -1) means "not in COCO" and is left out. The file
    is a list of ``{"image_id", "coco_id", "flickr_id", "url", "width", "height"}`` (108,077 images). A record
    whose ``image_id`` is not an integer, or whose ``coco_id`` is neither an integer nor null, goes through
    ``policy``; a file that is not an array of objects raises ``FileShapeError``.
    """
    path = Path(path)
    policy = resolve_policy(policy)
    if top_level_kind(path) != "array":
        raise FileShapeError(
            f"{path}: not a Visual Genome image_data.json: the top level is not an array; expected [{VG_FIELDS}, ...]",
            file=str(path),
        )
    out: dict[str, str] = {}
    n_items, kinds = 0, set()
    for i, raw in enumerate(iter_array_items(path)):
        n_items += 1
        kinds.add(json_type(raw))
        where = Where(path, f"item [{i}]")
        try:
            item = where.object(raw, VG_FIELDS)
            if is_int(item.get("image_id")):
                where = Where(path, f"item [{i}] (image_id {item['image_id']})")
            image_id = where.integer(item, "image_id", "the VG image id, GQA's imageId")
            coco = item.get("coco_id")
            if coco is not None and not is_int(coco):
                raise where.error(WrongTypeError, "coco_id", f"is {shown(coco)}", "an integer (the COCO id) or null")
        except DataError as e:
            policy.handle(e)
            continue
        if coco is not None and coco >= 0:
            out[str(image_id)] = str(coco)
    if n_items and "object" not in kinds:
        raise FileShapeError(
            f"{path}: not a Visual Genome image_data.json: its items are {', '.join(sorted(kinds))}, not objects "
            f"{VG_FIELDS}",
            file=str(path),
        )
    return out
