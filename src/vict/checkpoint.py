"""Atomic checkpoint directories and small safetensors helpers.

Every checkpoint `vict` writes (a model's trainable parts, a trainer's state) goes through
``atomic_directory``: the files are written into a temporary sibling folder, flushed to disk, and the folder
is renamed over the final path only when everything succeeded. A crash or an exception mid-write leaves the
previous checkpoint intact and never a half-written one. The temporary folder's name carries the writer's PID; the
next ``atomic_directory`` in the same folder removes those left by writers that are gone (a SIGKILL mid-save).

Integrity: with ``manifest=True`` the folder gets ``MANIFEST.json`` (every file's size and SHA-256), written last,
before the rename. ``verify_manifest`` lists what no longer matches (a truncated, missing or changed file);
``check_checkpoint`` raises ``CheckpointDamaged`` naming it. Loading and resuming check it first, so a damaged
checkpoint is refused with the file named, before any library reads it (or looks for it elsewhere).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
"""Every file of a checkpoint folder with its size and SHA-256 (``write_manifest``)."""
_LEFTOVER = re.compile(r"^\..+\.(tmp|old)-(\d+)-")


class CheckpointDamaged(ValueError):
    """A checkpoint folder whose files no longer match its manifest (``problems`` names each one)."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        super().__init__(
            f"{root}: damaged checkpoint ({'; '.join(problems[:6])}"
            + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
            + "): restore it from a copy, or resume from an earlier checkpoints/step-*"
        )
        self.root, self.problems = root, problems


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(root: str | Path) -> Path:
    """Write ``root/MANIFEST.json``: ``{"format": 1, "files": {relative path: {"size", "sha256"}}}``."""
    root = Path(root)
    files = {
        path.relative_to(root).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST
    }
    out = root / MANIFEST
    out.write_text(json.dumps({"format": 1, "files": files}, indent=1) + "\n")
    return out


def verify_manifest(root: str | Path) -> list[str] | None:
    """What in ``root`` no longer matches its manifest (``[]``: intact; ``None``: no manifest to check against)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{MANIFEST} is unreadable ({err})"]
    problems = []
    for name, entry in files.items():
        file = root / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif file.stat().st_size != entry["size"]:
            problems.append(f"{name} is {file.stat().st_size} bytes, {entry['size']} when written (truncated?)")
        elif _sha256(file) != entry["sha256"]:
            problems.append(f"{name} changed since it was written (SHA-256 differs)")
    return problems


def check_checkpoint(root: str | Path) -> None:
    """Raise ``CheckpointDamaged`` when ``root`` does not match its manifest (a folder without one passes)."""
    problems = verify_manifest(root)
    if problems:
        raise CheckpointDamaged(Path(root), problems)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(parent: Path) -> list[Path]:
    """Remove the temporary folders of ``atomic_directory`` writes in ``parent`` whose writer process is gone."""
    removed = []
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        match = _LEFTOVER.match(path.name)
        if match and path.is_dir() and int(match.group(2)) != os.getpid() and not _pid_alive(int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.warning("removed %d folder(s) left by interrupted saves: %s", len(removed), [p.name for p in removed])
    return removed


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename itself durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_directory(final_path: str | Path, manifest: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``final_path`` atomically when the block succeeds.

    Usage::

        with atomic_directory(out_dir) as tmp:
            save_file(tensors, tmp / "weights.safetensors")

    The temporary directory is a sibling of ``final_path`` (same file system, so the rename is atomic).
    On success its files are fsynced and it is renamed to ``final_path``; an existing ``final_path`` is first
    moved aside and deleted only after the rename. On an exception the temporary directory is removed and
    ``final_path`` is left exactly as it was. ``manifest``: write ``MANIFEST.json`` last (module docstring).
    Folders are created with the umask's permissions (not ``mkdtemp``'s 0700).
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final_path.parent)
    tmp = _fresh_dir(final_path, "tmp")
    try:
        yield tmp
        if manifest:
            write_manifest(tmp)
        _fsync_tree(tmp)
        old: Path | None = None
        if final_path.exists():
            old = _fresh_dir(final_path, "old")
            os.rmdir(old)
            os.replace(final_path, old)
        try:
            os.replace(tmp, final_path)
        except BaseException:
            if old is not None:
                os.replace(old, final_path)
            raise
        _fsync_dir(final_path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fresh_dir(final_path: Path, kind: str) -> Path:
    """A new empty sibling ``.<name>.<kind>-<pid>-<random>`` (mode from the umask)."""
    while True:
        path = final_path.parent / f".{final_path.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save a flat tensor dict as safetensors (tensors are made contiguous and moved to CPU first)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file into a flat tensor dict; a missing file is reported with its path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such safetensors file (was the checkpoint written completely?)")
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise ValueError(
            f"{path}: not a readable safetensors file ({err}): truncated or damaged; restore it from a copy"
        ) from err
