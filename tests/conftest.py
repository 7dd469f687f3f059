"""Shared fixtures: a hermetic cache for the tiny model zoo, and the tiny VICT model.

Every test session writes its tiny BLIP-2 / LLaMA checkpoints into a temporary ``VICT_CACHE_DIR`` (about a
second, once), so tests never read or pollute the user's ``~/.cache/vict``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The test models are tiny: intra-op threading only adds synchronisation cost, which explodes on a shared,
# oversubscribed CI machine (measured: a tiny VisionLLM forward 0.35-0.6 s with 2 threads vs 0.05 s with 1).
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def vict_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A per-session ``VICT_CACHE_DIR`` (tiny checkpoints are generated into it on first use)."""
    path = tmp_path_factory.mktemp("vict_cache")
    previous = os.environ.get("VICT_CACHE_DIR")
    os.environ["VICT_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("VICT_CACHE_DIR", None)
    else:
        os.environ["VICT_CACHE_DIR"] = previous


@pytest.fixture
def tiny_model():
    """A fresh tiny VICT model (LoRA r=4, 8 + 4 visual tokens, 30 px images), seed 0, in eval mode."""
    from vict.models.builders import build_tiny

    return build_tiny(peft="lora", num_extra_queries=4, seed=0)
