"""The shipped zoo is reproducible: a short prefix of `vict zoo build --preset default` gives, bit for bit, the
first losses of the stages that the shipped build recorded in its zoo.json.

Slow tier (about a minute). Bit-identical floats need the kernels the shipped zoo was built with: `.ci/run` runs the
slow tier with torch, MKL and oneDNN pinned to AVX2 (README "Development"), as `vict zoo build` documents.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vict.zoo import build_zoo, shipped_zoo
from vict.zoo.training import quiet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = 3


def test_a_build_prefix_reproduces_the_shipped_first_losses(tmp_path: Path) -> None:
    shipped = shipped_zoo("default")
    recorded = shipped.manifest()["first_losses"]
    prefix = build_zoo(tmp_path, "default", seed=0, progress=quiet, max_steps=PREFIX, reference=shipped)
    assert prefix.manifest()["key"] == shipped.manifest()["key"]  # the same config and seed as the shipped build
    got = prefix.manifest()["first_losses"]
    assert set(got) == set(recorded) == {"source_lm", "target_lm", "vision", "qformer", "blip2"}
    # every stage but the generative one, which starts from the stage-1 Q-Former that no build keeps (the full
    # build's determinism, generative stage included, is tested on the micro preset: tests/unit/zoo/test_build.py)
    for stage in ("source_lm", "target_lm", "vision", "qformer"):
        assert got[stage] == recorded[stage][:PREFIX], (stage, got[stage], recorded[stage][:PREFIX])
