"""The miniature model zoo: a tiny BLIP-2 (ViT + Q-Former + OPT) and a tiny LLaMA, pretrained on the scene stream.

``resolve_zoo(preset, cache_dir)`` gives the shipped zoo (``vict.zoo.shipped``, SHA-256 checked) or a cached
build; ``build_zoo(out_dir, preset, seed)`` trains one (or reuses a cached build) and returns ``ZooPaths``;
``open_zoo(folder)`` opens a finished build; presets are in ``vict.zoo.presets`` (``with_overrides`` changes a
preset's settings, as ``vict zoo build --set`` does).
"""

from __future__ import annotations

from vict.zoo.build import ZooPaths, build_zoo, zoo_key
from vict.zoo.presets import PRESETS, Blip2Spec, LMSpec, ZooConfig, get_preset, with_overrides
from vict.zoo.shipped import ZooIntegrityError, open_zoo, resolve_zoo, shipped_zoo

__all__ = [
    "PRESETS",
    "Blip2Spec",
    "LMSpec",
    "ZooConfig",
    "ZooIntegrityError",
    "ZooPaths",
    "build_zoo",
    "get_preset",
    "open_zoo",
    "resolve_zoo",
    "shipped_zoo",
    "with_overrides",
    "zoo_key",
]
