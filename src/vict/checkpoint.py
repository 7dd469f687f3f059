"""Atomic checkpoint directories and small safetensors helpers.

Every checkpoint `vict` writes (a model's trainable parts, a trainer's state) goes through
``atomic_directory``: the files are written into a temporary sibling folder, flushed to disk, and the folder
is renamed over the final path only when everything succeeded. A crash or an exception mid-write leaves the
previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


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
def atomic_directory(final_path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``final_path`` atomically when the block succeeds.

    Usage::

        with atomic_directory(out_dir) as tmp:
            save_file(tensors, tmp / "weights.safetensors")

    The temporary directory is a sibling of ``final_path`` (same file system, so the rename is atomic).
    On success its files are fsynced and it is renamed to ``final_path``; an existing ``final_path`` is first
    moved aside and deleted only after the rename. On an exception the temporary directory is removed and
    ``final_path`` is left exactly as it was.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.tmp-", dir=final_path.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        old: Path | None = None
        if final_path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.old-", dir=final_path.parent))
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


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save a flat tensor dict as safetensors (tensors are made contiguous and moved to CPU first)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file into a flat tensor dict; a missing file is reported with its path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such safetensors file (was the checkpoint written completely?)")
    return load_file(str(path), device=str(device))
