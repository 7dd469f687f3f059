"""Content-addressed cache folders for the zoo: a hash names the build, and a build appears atomically.

The key hashes the resolved zoo config, the seed and a format version (the zoo reads no files: its data is the
in-memory scene stream), so any change of any of them gives a new folder and an unchanged setup reuses the old
one. A build is written into a temporary sibling folder and renamed into place
only when complete, so an interrupted build never looks finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vict.checkpoint import atomic_directory

ZOO_FORMAT_VERSION = 3
"""Bump when the zoo's layout or training code changes what a given config produces."""

MANIFEST = "zoo.json"
"""Written last inside a build folder; its presence marks the build as complete."""


def cache_key(config: dict[str, Any], seed: int) -> str:
    """16 hex digits naming the build of ``config`` with ``seed``."""
    payload = json.dumps({"format": ZOO_FORMAT_VERSION, "config": config, "seed": seed}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished build (its manifest was written)."""
    return (Path(folder) / MANIFEST).is_file()


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it replaces ``final`` atomically, on error it is
    deleted and ``final`` is left as it was (``vict.checkpoint.atomic_directory``). A leftover ``final`` without a
    manifest is not a build and is replaced; a concurrent build of the same key is equal, so replacing it is safe.
    """
    with atomic_directory(final) as tmp:
        yield tmp
