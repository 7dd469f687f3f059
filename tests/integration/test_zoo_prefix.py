"""The shipped zoo is reproducible: a short prefix of `vict zoo build --preset default` gives the first losses of the
stages that the shipped build recorded in its zoo.json (the first bit for bit, the next to within 1e-6).

Slow tier (about a minute). Floats this close need the kernels the shipped zoo was built with: `.ci/run` runs the
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
    # The first loss (before any update) bit for bit; the next ones within 1e-6: on a second machine of the same kind
    # with the same pinned kernels, four of the eight later losses came out one float32 ulp apart (6.1927328 against
    # 6.1927323 for the target LM's second step, whose third step then matched to the bit), so exact equality there
    # tested which machine ran it. A changed recipe, data order or initialisation moves them by far more.
    for stage in ("source_lm", "target_lm", "vision", "qformer"):
        want = recorded[stage][:PREFIX]
        assert got[stage][0] == want[0], (stage, got[stage], want)
        assert got[stage] == pytest.approx(want, rel=1e-6, abs=0), (stage, got[stage], want)
