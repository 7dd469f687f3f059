"""benchmarks/inference_speed.py runs on the shipped miniature and prints its ratio lines (no timing assertions)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LINES = ("self_reuse_vs_naive", "prefix_reuse_6q", "batch16_vs_batch1", "batched_outputs_identical")


def test_inference_benchmark_prints_its_ratios(capsys) -> None:
    spec = importlib.util.spec_from_file_location("inference_speed", ROOT / "benchmarks" / "inference_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--images", "3", "--repeats", "1", "--no-large"]) == 0
    out = capsys.readouterr().out
    values = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+): ([\d.]+)$", out, re.M)}
    assert set(values) == set(LINES), out
    assert values["batched_outputs_identical"] == 1.0  # batch 16 and batch 1 give the same text
    assert all(values[name] > 0 for name in LINES)
