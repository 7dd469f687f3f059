"""COCO caption loaders: official ``captions_*.json``, Karpathy ``dataset_coco.json``, LAVIS ``coco_karpathy_*.json``.

All three give ``ImageRecord``s keyed by the COCO image id written in decimal (``"391895"``), with
captions stripped of surrounding whitespace and no QAs. The format is detected from the file's shape.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vict.data.fields import Where, is_int, json_type, shown
from vict.data.jsonio import load_json
from vict.data.policy import (
    BadInputPolicy,
    DataError,
    EmptyFieldError,
    FileShapeError,
    MissingFieldError,
    SkippedImageError,
    UnknownImageError,
    WrongTypeError,
    resolve_policy,
)
from vict.data.records import ImageRecord

KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}
"""Karpathy split name -> the ``split`` values it includes (restval is part of the usual 113k train)."""


def detect_caption_format(data: Any, path: str | Path = "captions file") -> str:
    """``"official"`` (COCO, incl. LAVIS ``*_gt.json``), ``"karpathy"`` or ``"lavis"``; ``FileShapeError`` otherwise."""
    if isinstance(data, dict) and "annotations" in data:
        return "official"
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return "karpathy"
    if isinstance(data, list) and (not data or any(isinstance(item, dict) for item in data)):
        return "lavis"
    if isinstance(data, dict):
        found = f"an object with keys {sorted(data)[:8]}"
    elif isinstance(data, list):
        found = f"an array of {', '.join(sorted({json_type(item) for item in data}))}, not of objects"
    else:
        found = shown(data)
    raise FileShapeError(
        f"{path}: unrecognised caption file: the top level is {found}; expected COCO captions_*.json (an object "
        "{'images': [{'id', 'file_name'}], 'annotations': [{'image_id', 'caption'}]}), Karpathy dataset_coco.json "
        "({'images': [{'cocoid', 'sentences': [{'raw'}]}]}) or a LAVIS coco_karpathy_*.json array of "
        "{'image', 'caption'} objects; check that this is the captions file",
        file=str(path),
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


def _top_list(data: dict, key: str, path: Path, expected: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        found = "missing" if key not in data else f"{shown(value)}, not an array"
        raise FileShapeError(
            f"{path}: '{key}' is {found}; a COCO captions file holds '{key}': [{expected}, ...]", file=str(path)
        )
    return value


def check_coco_captions(
    data: Any, path: str | Path, *, policy: BadInputPolicy | str | None = None, need_file_name: bool = False
) -> dict[str, list[dict]]:
    """The valid records of an official-format captions file: ``{"images": [...], "annotations": [...]}``.

    Each kept record is the file's own object (extra keys such as the world's ``"dense"`` flag kept; captions not
    stripped). Checked: ``images`` is an array of objects with an integer ``id`` and, when present (required with
    ``need_file_name``), a non-empty string ``file_name``; ``annotations`` is an array of objects with an integer
    ``image_id`` naming a listed image and a non-empty string ``caption``. A bad record goes through ``policy``
    (fail: raised; skip: counted and left out); the captions of an image whose own entry was skipped are left out
    with it (counted as ``image_skipped``). A file of the wrong shape raises ``FileShapeError`` under both modes.
    """
    path = Path(path)
    policy = resolve_policy(policy)
    if not isinstance(data, dict):
        detect_caption_format(data, path)  # raises, describing what the file is
    images = _top_list(data, "images", path, "{'id': int, 'file_name': str}")
    annotations = _top_list(data, "annotations", path, "{'image_id': int, 'caption': str}")
    kept_images: list[dict] = []
    known: set[int] = set()
    skipped: set[str] = set()
    for i, raw in enumerate(images):
        where = Where(path, f"images[{i}]")
        try:
            img = where.object(raw, "{'id': int, 'file_name': str}")
            if is_int(img.get("id")):
                where = Where(path, f"images[{i}] (id {img['id']})")
            image_id = where.integer(img, "id", "the COCO image id that annotations[].image_id refers to")
            where.text(img, "file_name", "the image file, relative to the images folder", optional=not need_file_name)
        except DataError as e:
            if isinstance(raw, dict) and isinstance(raw.get("id"), int | str):
                skipped.add(str(raw["id"]))  # its captions go with it (a string "2" is still image 2)
            policy.handle(e)
            continue
        known.add(image_id)
        kept_images.append(img)
    kept_annotations: list[dict] = []
    for i, raw in enumerate(annotations):
        where = Where(path, f"annotations[{i}]")
        try:
            ann = where.object(raw, "{'image_id': int, 'caption': str}")
            label = ", ".join(f"{k} {ann[k]}" for k in ("id", "image_id") if is_int(ann.get(k)))
            where = Where(path, f"annotations[{i}]" + (f" ({label})" if label else ""))
            image_id = where.integer(ann, "image_id", "the id of an entry of 'images'")
            if image_id not in known:
                if str(image_id) in skipped:
                    raise SkippedImageError(
                        f"{path}: {where.record}: its image {image_id} was skipped (a bad entry in 'images'), so its "
                        "caption is skipped with it",
                        file=str(path),
                        record=where.record,
                        field="image_id",
                    )
                raise where.error(
                    UnknownImageError,
                    "image_id",
                    f"is {image_id}, which no entry of 'images' has",
                    "the id of an entry of 'images' (add the image there, or correct the id)",
                )
            where.text(ann, "caption", "the caption text")
        except DataError as e:
            policy.handle(e)
            continue
        kept_annotations.append(ann)
    return {"images": kept_images, "annotations": kept_annotations}


def _load_official(data: dict, path: Path, images_dir: Path | None, policy: BadInputPolicy) -> dict[str, ImageRecord]:
    checked = check_coco_captions(data, path, policy=policy, need_file_name=images_dir is not None)
    records: dict[str, ImageRecord] = {}
    for img in checked["images"]:
        _record(records, str(img["id"]), images_dir / img["file_name"] if images_dir else None)
    for ann in checked["annotations"]:
        records[str(ann["image_id"])].captions.append(ann["caption"].strip())
    return records


def _load_karpathy(
    data: dict, path: Path, images_dir: Path | None, split: str | None, policy: BadInputPolicy
) -> dict[str, ImageRecord]:
    wanted = KARPATHY_SPLITS[split] if split else None
    records: dict[str, ImageRecord] = {}
    expected = "{'cocoid': int, 'filename': str, 'split': str, 'sentences': [{'raw': str}]}"
    for i, raw in enumerate(data["images"]):
        where = Where(path, f"images[{i}]")
        try:
            img = where.object(raw, expected)
            if is_int(img.get("cocoid")):
                where = Where(path, f"images[{i}] (cocoid {img['cocoid']})")
            if wanted is not None and where.text(img, "split", "train, val, test or restval") not in wanted:
                continue
            cocoid = where.integer(img, "cocoid", "the COCO image id")
            name = where.text(img, "filename", "the image file name", optional=images_dir is None)
            folder = where.text(img, "filepath", "the folder under the images root, e.g. val2014", optional=True)
            sentences = img.get("sentences")
            if not isinstance(sentences, list):
                problem = "is missing" if "sentences" not in img else f"is {shown(sentences)}"
                raise where.error(
                    MissingFieldError if "sentences" not in img else WrongTypeError,
                    "sentences",
                    problem,
                    "an array of {'raw': str} objects (the captions)",
                )
        except DataError as e:
            policy.handle(e)
            continue
        file = images_dir / (folder or "") / name if images_dir is not None and name else None
        rec = _record(records, str(cocoid), file)
        for j, sentence in enumerate(sentences):
            at = Where(path, f"images[{i}] (cocoid {cocoid}) sentences[{j}]")
            try:
                rec.captions.append(at.text(at.object(sentence, "{'raw': str}"), "raw", "the caption text").strip())
            except DataError as e:
                policy.handle(e)
    return records


def _load_lavis(data: list, path: Path, images_dir: Path | None, policy: BadInputPolicy) -> dict[str, ImageRecord]:
    records: dict[str, ImageRecord] = {}
    for i, raw in enumerate(data):
        where = Where(path, f"item [{i}]")
        try:
            ann = where.object(raw, "{'image': str, 'caption': str or [str]}")
            image = where.text(ann, "image", "the image file, e.g. val2014/COCO_val2014_000000391895.jpg")
            where = Where(path, f"item [{i}] (image {image!r})")
            raw_id = ann.get("image_id")
            if isinstance(raw_id, str) and re.fullmatch(r"coco_\d+", raw_id):
                image_id = str(int(raw_id[5:]))
            elif is_int(raw_id):
                image_id = str(raw_id)
            else:
                try:
                    image_id = coco_id_from_filename(image)
                except ValueError:
                    raise where.error(
                        WrongTypeError,
                        "image_id",
                        f"is {shown(raw_id) if 'image_id' in ann else 'missing'} and the file name has no id",
                        "'coco_<digits>' or an integer, or a file name ending in _<digits>.jpg",
                    ) from None
            value = ann.get("caption")
            if isinstance(value, list):
                captions = [where.text({"caption": c}, "caption", "the caption text") for c in value]
                if not captions:
                    raise where.error(EmptyFieldError, "caption", "is an empty array", "one or more captions")
            else:
                captions = [where.text(ann, "caption", "the caption text, or an array of them")]
        except DataError as e:
            policy.handle(e)
            continue
        rec = _record(records, image_id, images_dir / image if images_dir else None)
        rec.captions.extend(c.strip() for c in captions)
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
        policy: what to do with a bad record (default: fail fast; see ``check_coco_captions`` for what is
            checked in each format). A file of the wrong shape raises ``FileShapeError`` under both modes.
    """
    path = Path(path)
    policy = resolve_policy(policy)
    data = load_json(path)
    fmt = detect_caption_format(data, path)
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
