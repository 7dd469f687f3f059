"""JSON reading with positions in errors, and an incremental reader for files too large to hold three times.

``json.load`` on a 1 GB GQA file holds the text, the parsed dict and then the records built from it. The
incremental readers here keep only a window of the text (``chunk_chars``, default 1 Mi characters, plus the
record being parsed) and yield one top-level member at a time, so memory is one window + what the caller
keeps. Malformed input raises ``MalformedJSONError`` naming the file, the line and the column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vict.data.policy import MalformedJSONError

CHUNK_CHARS = 1 << 20
_WS = " \t\n\r"
_DECODER = json.JSONDecoder()


def _malformed(path: Path, line: int, col: int, msg: str) -> MalformedJSONError:
    return MalformedJSONError(
        f"{path}:{line}:{col}: malformed JSON ({msg}); the file is damaged or truncated: re-download or "
        f"regenerate it (`python -m json.tool {path}` shows the same position)"
    )


def load_json(path: str | Path) -> Any:
    """``json.load`` that reports a missing file or malformed JSON with file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found; check the path (cwd: {Path.cwd()})")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise _malformed(path, e.lineno, e.colno, e.msg) from None
    except UnicodeDecodeError as e:
        raise MalformedJSONError(
            f"{path}: byte {e.start} is not UTF-8 ({e.reason}); JSON files must be UTF-8"
        ) from None


class _Window:
    """A sliding window over a text file that tracks line numbers of discarded text."""

    def __init__(self, path: Path, chunk_chars: int) -> None:
        self.path = path
        self.chunk = chunk_chars
        self.file = path.open(encoding="utf-8")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.consumed = 0  # characters discarded before buf
        self.lines_before = 0  # newlines in the discarded text
        self.line_start = 0  # absolute offset where the current line starts, if it starts in discarded text

    def close(self) -> None:
        self.file.close()

    def fill(self) -> bool:
        if self.eof:
            return False
        if self.pos > self.chunk:  # drop what was parsed, keeping line bookkeeping for error messages
            dropped = self.buf[: self.pos]
            self.lines_before += dropped.count("\n")
            k = dropped.rfind("\n")
            if k >= 0:
                self.line_start = self.consumed + k + 1
            self.consumed += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            text = self.file.read(self.chunk)
        except UnicodeDecodeError as e:
            raise MalformedJSONError(
                f"{self.path}: bytes are not UTF-8 ({e.reason}); JSON files must be UTF-8"
            ) from None
        if not text:
            self.eof = True
            return False
        self.buf += text
        return True

    def where(self, i: int) -> tuple[int, int]:
        """(line, column), 1-based, of buffer index ``i``."""
        line = self.lines_before + self.buf.count("\n", 0, i) + 1
        k = self.buf.rfind("\n", 0, i)
        col = i - k if k >= 0 else self.consumed + i - self.line_start + 1
        return line, col

    def error(self, i: int, msg: str) -> MalformedJSONError:
        line, col = self.where(i)
        return _malformed(self.path, line, col, msg)

    def peek(self) -> str:
        """Next non-whitespace character ('' at end of file), without consuming it."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise self.error(self.pos, f"expected {what}, found {c!r}" if c else f"expected {what}, found end of file")
        self.pos += 1
        return c

    def value(self) -> Any:
        """Decode one JSON value at the cursor, reading more text while the value is incomplete."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # Incomplete (cut by the window) unless the error sits well before the end of the window.
                incomplete = e.pos >= len(self.buf) - 8 or e.msg.startswith("Unterminated string")
                if incomplete and self.fill():
                    continue
                raise self.error(e.pos, e.msg) from None
            # A number cut by the window's edge ("44" of "4444.5", or "4444." waiting for its digits) parses as a
            # shorter number: accept a value only once the character after it is in the window and ends it.
            is_number = isinstance(obj, int | float) and not isinstance(obj, bool)
            cut = end == len(self.buf) or (is_number and self.buf[end] not in _WS + ",]}")
            if cut and self.fill():
                continue
            self.pos = end
            return obj


def iter_object_items(path: str | Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` of a top-level JSON object one at a time (e.g. a GQA questions file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found; check the path (cwd: {Path.cwd()})")
    w = _Window(path, chunk_chars)
    try:
        w.expect("{", "'{' (a JSON object keyed by id)")
        if w.peek() == "}":
            w.pos += 1
        else:
            while True:
                if w.peek() != '"':
                    raise w.error(w.pos, "expected a string key")
                key = w.value()
                w.expect(":", "':' after a key")
                yield key, w.value()
                if w.expect(",}", "',' or '}' after a value") == "}":
                    break
        if w.peek():
            raise w.error(w.pos, "extra data after the top-level object")
    finally:
        w.close()


def iter_array_items(path: str | Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[Any]:
    """Yield the items of a top-level JSON array one at a time (e.g. VG ``image_data.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found; check the path (cwd: {Path.cwd()})")
    w = _Window(path, chunk_chars)
    try:
        w.expect("[", "'[' (a JSON array)")
        if w.peek() == "]":
            w.pos += 1
        else:
            while True:
                yield w.value()
                if w.expect(",]", "',' or ']' after an item") == "]":
                    break
        if w.peek():
            raise w.error(w.pos, "extra data after the top-level array")
    finally:
        w.close()


def top_level_kind(path: str | Path) -> str:
    """``"object"``, ``"array"`` or ``"other"``: the first non-whitespace character of a JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found; check the path (cwd: {Path.cwd()})")
    with path.open(encoding="utf-8") as f:
        while True:
            c = f.read(1)
            if not c:
                return "other"
            if c not in _WS:
                return {"{": "object", "[": "array"}.get(c, "other")
