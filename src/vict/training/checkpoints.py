"""Where a run's checkpoints live, which one is the latest, and rotation of old ones.

``<output_dir>/checkpoints/step-<8 digits>/`` holds a resumable checkpoint: the model's trainable parts (the
files of ``VisionLLM.save_pretrained``), ``config.yaml`` (the resolved run config) and ``training_state/``.
``<output_dir>/final/`` holds the model and ``config.yaml`` only, and loads with ``VisionLLM.from_pretrained``.
Both carry ``MANIFEST.json`` (``vict.checkpoint``); ``latest_checkpoint`` skips a step whose files no longer match
it (a truncated optimizer file, a deleted adapter), with a warning naming what is damaged, and returns the newest
intact one.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from vict.checkpoint import verify_manifest

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
CONFIG_YAML = "config.yaml"
"""The resolved run config, saved in the run folder and in every checkpoint."""
_STEP_RE = re.compile(r"^step-(\d+)$")


def step_dir(output_dir: str | Path, step: int) -> Path:
    """``<output_dir>/checkpoints/step-00000050``."""
    return Path(output_dir) / CHECKPOINTS_DIR / f"step-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first (temporary folders of interrupted writes are ignored)."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_RE.match(path.name)
        if match and path.is_dir() and (path / "training_state" / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest intact resumable checkpoint of a run, or ``None`` (damaged newer ones skipped with a warning)."""
    for _, path in reversed(list_checkpoints(output_dir)):
        problems = verify_manifest(path)
        if not problems:
            return path
        logger.warning(
            "checkpoint %s is damaged (%s); falling back to the previous one", path, "; ".join(problems[:4])
        )
    return None


def rotate_checkpoints(output_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints; return the deleted paths."""
    found = list_checkpoints(output_dir)
    doomed = [path for _, path in found[:-keep_last]] if keep_last > 0 else [p for _, p in found]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
