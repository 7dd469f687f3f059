"""Typed checks of annotation records: every field is read through here, so a wrong type never becomes data.

``Where(file, record)`` names one record (``annotations[3] (id 10)``, ``question '1000'``); its methods read one
field each and return the value, or raise a ``DataError`` whose message names the file, the record, the field,
what was found, what was expected and the fix (edit the record, or skip bad records: ``SKIP_HINT``). The loaders
hand those errors to the bad-input policy (``vict.data.policy``).

JSON types are named as JSON names them (``null``, ``number``, ``string``, ``array``, ``object``): ``12345`` where a
caption belongs is "a number", not an int, since the reader of the message is looking at the JSON file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vict.data.policy import SKIP_HINT, EmptyFieldError, MissingFieldError, WrongTypeError


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type: ``null``, ``boolean``, ``number``, ``string``, ``array`` or ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as a message shows it: ``null``, ``12345 (a number)``, ``'' (an empty string)``, ``an array``."""
    kind = json_type(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return "'' (an empty string)" if not value.strip() else f"the string {value[:limit]!r}"
    if kind in ("number", "boolean"):
        return f"{value!r} (a {kind})".replace("True", "true").replace("False", "false")
    return f"an {kind}" if kind in ("array", "object") else f"a {kind}"


def is_int(value: Any) -> bool:
    """An integer that is not a boolean (JSON ``true`` is not an id)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Where:
    """One record of one file, for reading its fields with errors that name both."""

    file: Path | str
    record: str

    def _message(self, field: str | None, problem: str, expected: str) -> str:
        at = f"{self.file}: {self.record}" + (f": field {field!r}" if field else "")
        return f"{at} {problem}; expected {expected}. Fix or delete the record, {SKIP_HINT}"

    def error(self, cls: type, field: str | None, problem: str, expected: str) -> Exception:
        """A ``cls`` (a ``DataError`` subclass) with the standard message and location."""
        return cls(self._message(field, problem, expected), file=str(self.file), record=self.record, field=field)

    def object(self, value: Any, expected: str) -> dict:
        """The record itself, which must be a JSON object (``expected`` describes it, e.g. ``{"id", "file_name"}``)."""
        if not isinstance(value, dict):
            raise self.error(WrongTypeError, None, f"is {shown(value)}", f"an object {expected}")
        return value

    def _get(self, rec: dict, field: str, expected: str, optional: bool) -> Any:
        if field not in rec:
            if optional:
                return None
            raise self.error(MissingFieldError, field, "is missing", expected)
        return rec[field]

    def text(self, rec: dict, field: str, what: str, *, optional: bool = False, empty_ok: bool = False) -> str | None:
        """A string field (``what`` says what it holds). Missing or null: ``None`` if ``optional``, else an error;
        empty or only whitespace: an error unless ``empty_ok`` (then ``None``). Returned as it is (not stripped)."""
        expected = f"a non-empty string ({what})"
        value = self._get(rec, field, expected, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.error(WrongTypeError, field, f"is {shown(value)}", expected)
        if not value.strip():
            if empty_ok:
                return None
            raise self.error(EmptyFieldError, field, "is empty", expected)
        return value

    def integer(self, rec: dict, field: str, what: str, *, optional: bool = False) -> int | None:
        """An integer field (not a boolean, not a string of digits)."""
        expected = f"an integer ({what})"
        value = self._get(rec, field, expected, optional)
        if value is None and optional:
            return None
        if not is_int(value):
            raise self.error(WrongTypeError, field, f"is {shown(value)}", expected)
        return value

    def flag(self, rec: dict, field: str, default: bool) -> bool:
        """An optional boolean field (``"false"`` or ``0`` is not a boolean: ``bool("false")`` would be true)."""
        value = rec.get(field)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(WrongTypeError, field, f"is {shown(value)}", "true or false")
        return value
