"""`vict quickstart --preset fast` through the real CLI, as CI runs it: every report key, files and tables.

Slow tier (about 2-4 minutes on 2 CPU cores; measured 134 s for seed 0 on a quiet machine). The fast preset is a
pipeline check, so only the report's shape and a few loose sanity bounds are asserted; the learned effects are
asserted on the default preset (`test_quickstart.py::test_default_preset_learns`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_quickstart import _check_keys

from vict.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_fast_preset_writes_every_key_and_prints_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["quickstart", "--out", str(tmp_path), "--preset", "fast", "--seed", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    _check_keys(report)
    for name in ("report.md", "similarity.png", "gqa_context.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "Captioning" in printed and "GQA" in printed
    # VICT-LoRA's answers are of the right kind: far above always answering the most frequent answer.
    assert report["gqa"]["vict-lora"]["none"] > report["baselines"]["majority"] + 10, report["gqa"]
