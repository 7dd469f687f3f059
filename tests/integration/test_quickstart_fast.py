"""`vict quickstart --preset fast` through the real CLI, as CI runs it: every report key, files and tables.

Slow tier (two runs of the fast preset, a few minutes each on 2 CPU cores): every key, the same report for the
same seed, and the fast preset's target for VICT-LoRA; the other learned effects are asserted on the default preset
(`test_quickstart.py::test_default_preset_learns`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_quickstart import _check_keys, _numbers

from vict.cli import main
from vict.recipes import quickstart as qs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_fast_preset_writes_every_key_and_prints_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["quickstart", "--out", str(tmp_path), "--preset", "fast", "--seed", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    # the same seed gives the same report (everything but wall-clock timings and run paths), on the shipped zoo
    assert main(["quickstart", "--out", str(tmp_path / "again"), "--preset", "fast", "--seed", "0"]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert _numbers(again) == _numbers(report)
    _check_keys(report, qs.PRESETS["fast"])
    for name in ("report.md", "similarity.png", "gqa_context.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "Captioning" in printed and "GQA" in printed
    # VICT-LoRA's answers are of the right kind: far above always answering the most frequent answer ...
    assert report["gqa"]["vict-lora"]["none"] > report["baselines"]["majority"] + 10, report["gqa"]
    # ... and it sees: the target for this preset, question only + 15 (measured at seed 0 with the AVX2
    # kernels this tier pins: 61.11 against 39.44, +21.7; seeds 1 and 2 gave +17.8 and +12.8, docs/tuning.md)
    assert report["gqa"]["vict-lora"]["none"] >= report["baselines"]["question_only"] + 15, report["gqa"]
