"""benchmarks/train_throughput.py runs and prints one row per variant with its ratios (no timing assertions)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_benchmark_prints_ratios(tmp_path: Path, capsys):
    from vict.data.world import generate_world

    world = tmp_path / "world"
    generate_world(world, images=80, seed=0)
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--world", str(world), "--steps", "1", "--warmup", "0", "--repeats", "1", "train.batch_size=8"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(.+?)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x$", line)
        if m:
            rows[m.group(1).strip()] = [float(v) for v in m.groups()[1:]]
    expected = ["all on", *(f"{s} off" for s in bench.SWITCHES), "all off"]
    assert list(rows) == expected, out
    assert rows["all on"][3:] == [1.0, 1.0]
    assert all(r[0] > 0 and r[1] > 0 for r in rows.values())
    # Length grouping is the one switch whose effect is deterministic: it must cut padding.
    assert rows["group_by_length off"][2] > rows["all on"][2]
