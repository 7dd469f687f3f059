"""Loading and indexing prediction / annotation files, with errors that name the file, the record and the fix."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class ScoreError(ValueError):
    """Bad input to a scorer: the message names the file or record, the value received and how to fix it."""


def load_json(path: str | Path, what: str) -> Any:
    """Read a JSON file, raising ``ScoreError`` that names ``what`` and the path when it is missing or malformed
    (malformed JSON is reported with its line and column, as the data loaders do)."""
    from vict.data.jsonio import load_json as load_annotation_json
    from vict.data.policy import DataError

    if not Path(path).is_file():
        raise ScoreError(f"{what}: file not found: {path}")
    try:
        return load_annotation_json(path)
    except DataError as e:
        raise ScoreError(f"{what}: {e}") from e


def index_predictions(
    predictions: Sequence[Mapping[str, Any]],
    id_key: str,
    value_key: str,
    cast: Callable[[Any], Any] = str,
    what: str = "predictions",
) -> dict[Any, str]:
    """Turn ``[{id_key: id, value_key: text}]`` into ``{cast(id): text}``, rejecting malformed and duplicate records.

    Raises:
        ScoreError: not a list, a record without ``id_key``/``value_key``, a non-string value, or an id that occurs
            twice (the message lists the first duplicates: de-duplicate the file, keeping one prediction per id).
    """
    if isinstance(predictions, Mapping | str | bytes):
        raise ScoreError(f"{what}: expected a JSON list of {{{id_key!r}, {value_key!r}}} records; got a dict/str")
    out: dict[Any, str] = {}
    duplicates: list[Any] = []
    for k, rec in enumerate(predictions):
        if not isinstance(rec, Mapping) or id_key not in rec or value_key not in rec:
            keys = sorted(rec) if isinstance(rec, Mapping) else type(rec).__name__
            raise ScoreError(f"{what}: record #{k} must have keys {id_key!r} and {value_key!r}; got {keys}")
        value = rec[value_key]
        if not isinstance(value, str):
            raise ScoreError(f"{what}: record #{k} ({id_key}={rec[id_key]!r}): {value_key!r} must be a string")
        try:
            key = cast(rec[id_key])
        except (TypeError, ValueError) as e:
            raise ScoreError(f"{what}: record #{k}: {id_key}={rec[id_key]!r} is not a valid id ({e})") from e
        if key in out:
            duplicates.append(key)
        out[key] = value
    if duplicates:
        raise ScoreError(
            f"{what}: {len(duplicates)} duplicate {id_key} values (e.g. {duplicates[:5]}); keep one prediction per id"
        )
    return out
