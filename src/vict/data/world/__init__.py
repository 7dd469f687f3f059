"""The miniature world: procedurally generated scenes written in the official COCO and GQA formats.

``generate_world(out, images, seed, size)`` writes it (see ``generate.py`` for the splits, ``layout.py`` for the
folder layout and the dense-caption convention). Reading a split back is ``vict.data.dataset.load_world_split``
(also ``vict.data.load_world_split``): the generator does not import the readers.
"""

from __future__ import annotations

from vict.data.world.generate import generate_world, split_sizes
from vict.data.world.layout import DENSE_CAPTION_INDEX, SPLITS, world_files

__all__ = ["DENSE_CAPTION_INDEX", "SPLITS", "generate_world", "split_sizes", "world_files"]
