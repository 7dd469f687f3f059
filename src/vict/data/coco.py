"""COCO caption loaders: official ``captions_*.json``, Karpathy ``dataset_coco.json``, LAVIS ``coco_karpathy_*.json``.

All three give ``ImageRecord``s keyed by the COCO image id written in decimal (``"391895"``), with
captions stripped of surrounding whitespace and no QAs. The format is detected from the file's shape.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vict.data.jsonio import load_json
from vict.data.policy import BadInputPolicy, MissingFieldError, resolve_policy
from vict.data.records import ImageRecord

KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}
"""Karpathy split name -> the ``split`` values it includes (restval is part of the usual 113k train)."""


def detect_caption_format(data: Any) -> str:
    """``"official"`` (COCO, incl. LAVIS ``*_gt.json``), ``"karpathy"`` or ``"lavis"``; ValueError otherwise."""
    if isinstance(data, dict) and "annotations" in data:
        return "official"
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return "karpathy"
    if isinstance(data, list):
        return "lavis"
    keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
    raise ValueError(
        f"unrecognised caption file (top level: {keys}); expected COCO captions_*.json "
        "({'images', 'annotations'}), Karpathy dataset_coco.json ({'images': [...sentences...]}) or a LAVIS "
        "coco_karpathy_*.json list"
    )


def coco_id_from_filename(name: str) -> str:
    """``"val2014/COCO_val2014_000000391895.jpg"`` -> ``"391895"`` (the digits after the last ``_``)."""
    stem = Path(name).stem
    digits = re.search(r"(\d+)$", stem)
    if digits is None:
        raise ValueError(f"cannot read a COCO image id from file name {name!r} (expected ..._<digits>.jpg)")
    return str(int(digits.group(1)))


def _record(records: dict[str, ImageRecord], image_id: str, path: Path | None) -> ImageRecord:
    rec = records.get(image_id)
    if rec is None:
        rec = records[image_id] = ImageRecord(image_id=image_id, image_path=path)
    elif rec.image_path is None and path is not None:
        rec.image_path = path
    return rec


def _load_official(data: dict, path: Path, images_dir: Path | None, policy: BadInputPolicy) -> dict[str, ImageRecord]:
    records: dict[str, ImageRecord] = {}
    for i, img in enumerate(data.get("images", [])):
        if "id" not in img:
            policy.handle(MissingFieldError(f"{path}: images[{i}] has no 'id'; every COCO image needs one"))
            continue
        name = img.get("file_name")
        _record(records, str(img["id"]), images_dir / name if images_dir and name else None)
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in ("image_id", "caption") if k not in ann]
        if missing:
            policy.handle(
                MissingFieldError(f"{path}: annotations[{i}] (id {ann.get('id')}) has no {missing}; fix or drop it")
            )
            continue
        _record(records, str(ann["image_id"]), None).captions.append(str(ann["caption"]).strip())
    return records


def _load_karpathy(
    data: dict, path: Path, images_dir: Path | None, split: str | None, policy: BadInputPolicy
) -> dict[str, ImageRecord]:
    wanted = KARPATHY_SPLITS[split] if split else None
    records: dict[str, ImageRecord] = {}
    for i, img in enumerate(data["images"]):
        if wanted is not None and img.get("split") not in wanted:
            continue
        if "cocoid" not in img or "sentences" not in img:
            policy.handle(MissingFieldError(f"{path}: images[{i}] has no 'cocoid' or 'sentences'"))
            continue
        file = None
        if images_dir is not None and "filename" in img:
            file = images_dir / img.get("filepath", "") / img["filename"]
        rec = _record(records, str(img["cocoid"]), file)
        rec.captions.extend(str(s["raw"]).strip() for s in img["sentences"] if "raw" in s)
    return records


def _load_lavis(data: list, path: Path, images_dir: Path | None, policy: BadInputPolicy) -> dict[str, ImageRecord]:
    records: dict[str, ImageRecord] = {}
    for i, ann in enumerate(data):
        if "image" not in ann or "caption" not in ann:
            policy.handle(MissingFieldError(f"{path}: item [{i}] has no 'image' or 'caption'"))
            continue
        raw_id = ann.get("image_id")
        if isinstance(raw_id, str) and raw_id.startswith("coco_"):
            image_id = str(int(raw_id[5:]))
        else:
            image_id = coco_id_from_filename(ann["image"])
        rec = _record(records, image_id, images_dir / ann["image"] if images_dir else None)
        captions = ann["caption"] if isinstance(ann["caption"], list) else [ann["caption"]]
        rec.captions.extend(str(c).strip() for c in captions)
    return records


def load_coco_captions(
    path: str | Path,
    images_dir: str | Path | None = None,
    *,
    split: str | None = None,
    policy: BadInputPolicy | str | None = None,
) -> list[ImageRecord]:
    """Load a COCO-style caption file into records (captions only), in file order.

    Args:
        path: official ``captions_*.json``, Karpathy ``dataset_coco.json`` or LAVIS ``coco_karpathy_*.json``.
        images_dir: folder the file's image names are relative to (official: the folder holding
            ``file_name``; Karpathy: the folder holding ``train2014/`` and ``val2014/``; LAVIS: ``coco/images``).
            ``None`` leaves ``image_path`` unset.
        split: Karpathy only: ``"train"`` (train + restval), ``"val"`` or ``"test"``; ``None`` = all images.
        policy: what to do with records missing a field (default: fail fast).
    """
    path = Path(path)
    policy = resolve_policy(policy)
    data = load_json(path)
    fmt = detect_caption_format(data)
    images = Path(images_dir) if images_dir is not None else None
    if split is not None and fmt != "karpathy":
        raise ValueError(f"{path}: split={split!r} only applies to Karpathy dataset_coco.json; this file is {fmt}")
    if split is not None and split not in KARPATHY_SPLITS:
        raise ValueError(f"split={split!r}: use one of {sorted(KARPATHY_SPLITS)} (restval is part of train)")
    if fmt == "official":
        records = _load_official(data, path, images, policy)
    elif fmt == "karpathy":
        records = _load_karpathy(data, path, images, split, policy)
    else:
        records = _load_lavis(data, path, images, policy)
    return list(records.values())
