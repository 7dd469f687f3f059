"""Report writing shared by ``vict score``, ``vict eval`` and the quickstart: JSON + markdown tables.

Every evaluation writes ``report.json`` (machine-readable, the exact numbers) and ``report.md`` (the tables a person
reads). Missing values (a metric that could not run) print as ``n/a`` and stay ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    """One table cell: floats with ``digits`` decimals, ``None``/NaN as ``n/a``, the rest as ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub-markdown table; cells go through :func:`fmt`, columns are padded so the text form is readable."""
    cells = [list(header)] + [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def umask_mode(mode: int) -> int:
    """``mode`` less the process's umask (what ``open`` / ``mkdir`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (temporary file in the same folder, then rename)."""
    return write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, umask_mode(0o666))  # mkstemp makes 0600; a report is as readable as any file the user writes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def caption_table(rows: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """Table 1 layout: one row per model, one column per caption metric."""
    return markdown_table(["model", *metrics], [[name, *(r.get(m) for m in metrics)] for name, r in rows.items()])


def gqa_table(rows: Mapping[str, Mapping[str, Any]], settings: Sequence[str]) -> str:
    """Table 2 layout: one row per model, one column per context setting (``none``/``caption``/``self``)."""
    return markdown_table(["model", *settings], [[name, *(r.get(s) for s in settings)] for name, r in rows.items()])


def notes_lines(notes: Mapping[str, str]) -> list[str]:
    """Markdown bullet lines for ``{metric: reason}`` notes (why a metric is ``n/a``)."""
    return [f"- **{k}**: {v}" for k, v in notes.items()]
