"""benchmarks/serve_load.py runs end to end and prints its lines (no timing assertions: the numbers are in the README).

Slow tier: it starts `vict serve` twice as its own process on the shipped miniature (about a minute)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_serve_load_reports_batching_overload_and_no_errors() -> None:
    args = ["--requests", "16", "--clients", "4", "--burst", "16", "--overload-queue", "2", "--timeout", "120"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.startswith("serve_"))
    assert float(lines["serve_batched_vs_one_at_a_time"]) > 0
    assert lines["serve_errors"] == "0" and lines["serve_batched_identical"] == "1.000"
    assert lines["serve_overload_other_errors"] == "0" and lines["serve_overload_retry_after_ok"] == "1"
    assert float(lines["serve_overload_429_fraction"]) > 0  # 16 at once against a queue of 2: some refused
    assert lines["serve_after_burst_ok"] == "1"
