"""Shared fixtures of the zoo tests: a small world written by the real generator (`vict data world`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vict.data.world import generate_world


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image world (32 train / 4 val / 4 test), seed 0; read-only for the tests."""
    out = tmp_path_factory.mktemp("micro_world")
    generate_world(out, images=40, seed=0)
    return out
