"""Content-addressed cache folders for the zoo: a hash names the build, and a build appears atomically.

The key hashes the resolved zoo config, the seed, a format version and the world's content (every file under
``annotations/`` and ``images/``, by name and bytes), so any change of any of them gives a new folder and an
unchanged setup reuses the old one. A build is written into a temporary sibling folder and renamed into place
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

ZOO_FORMAT_VERSION = 2
"""Bump when the zoo's layout or training code changes what a given config produces."""

MANIFEST = "zoo.json"
"""Written last inside a build folder; its presence marks the build as complete."""


def world_fingerprint(world_dir: Path) -> str:
    """SHA-256 over the relative names and bytes of every file under ``annotations/`` and ``images/``."""
    world_dir = Path(world_dir)
    digest = hashlib.sha256()
    files = []
    for sub in ("annotations", "images"):
        folder = world_dir / sub
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is missing: {world_dir} is not a world folder; create one with "
                f"`vict data world --out {world_dir} --images 1000 --seed 0`"
            )
        files.extend(p for p in folder.rglob("*") if p.is_file())
    for path in sorted(files):
        digest.update(str(path.relative_to(world_dir)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cache_key(config: dict[str, Any], seed: int, world_hash: str) -> str:
    """16 hex digits naming the build of ``config`` with ``seed`` on the world with fingerprint ``world_hash``."""
    payload = json.dumps(
        {"format": ZOO_FORMAT_VERSION, "config": config, "seed": seed, "world": world_hash}, sort_keys=True
    )
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
