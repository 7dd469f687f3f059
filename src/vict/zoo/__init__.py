"""The miniature model zoo: a tiny BLIP-2 (ViT + Q-Former + OPT) and a tiny LLaMA, built from the world.

``build_zoo(world_dir, out_dir, preset, seed)`` trains them (or reuses a cached build) and returns
``ZooPaths``; presets are in ``vict.zoo.presets``.
"""

from __future__ import annotations

from vict.zoo.build import ZooPaths, build_zoo, zoo_key
from vict.zoo.presets import PRESETS, Blip2Spec, LMSpec, ZooConfig, get_preset

__all__ = ["PRESETS", "Blip2Spec", "LMSpec", "ZooConfig", "ZooPaths", "build_zoo", "get_preset", "zoo_key"]
