"""Run records: ``metrics.jsonl`` (one JSON object per logged event), TensorBoard when installed, throughput."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append-only metrics of a run (write on the main process only).

    Each call to :meth:`log` writes one line ``{"step": ..., "split": "train"|"val", ...}`` to
    ``<output_dir>/metrics.jsonl`` and, when the ``tensorboard`` package is installed, the same scalars to
    ``<output_dir>/tensorboard/``. On resume the file is truncated to the resumed step, so the records of the
    steps that are repeated are not duplicated.
    """

    def __init__(self, output_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: `pip install tensorboard`
                pass
            else:
                self._tb = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=resume_step)

    @property
    def tensorboard_enabled(self) -> bool:
        """Whether TensorBoard event files are being written."""
        return self._tb is not None

    def log(self, step: int, split: str, **values: Any) -> None:
        """Record ``values`` (numbers or short strings) at ``step`` for ``split``."""
        record = {"step": step, "split": split, **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        """Flush and close the files."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (an empty list when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Throughput:
    """Samples/s and non-pad tokens/s over the steps since the last :meth:`rate` call."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._samples = 0
        self._tokens = 0

    def add(self, samples: int, tokens: int) -> None:
        """Count one micro-batch: ``samples`` examples with ``tokens`` non-pad tokens."""
        self._samples += samples
        self._tokens += tokens

    def rate(self) -> tuple[float, float]:
        """``(samples_per_s, tokens_per_s)`` since the previous call; resets the window."""
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        out = (self._samples / elapsed, self._tokens / elapsed)
        self._start, self._samples, self._tokens = time.perf_counter(), 0, 0
        return out
