"""Deterministic, resumable batch order with optional length grouping, sharded across processes.

The order of the whole run is a pure function of ``(seed, epoch, global batch index)``: nothing is drawn
from a global random state, so a resumed run only needs the *data position* (how many global batches were
consumed) to continue exactly where it stopped, and every process computes the same plan without talking
to the others.

A *global batch* holds ``batch_size * world_size`` example indices; process ``rank`` takes the slice
``[rank * batch_size, (rank + 1) * batch_size)``. With length grouping, each epoch's shuffled indices are cut
into mega-chunks of ``group_size`` global batches; inside a chunk the examples are sorted by length and cut
into global batches, and the order of those batches is shuffled again (the chunk's longest batch goes first,
so an out-of-memory error shows up at the first step, not hours in). Padding then only spans examples of
similar length, which is what makes ``group_by_length`` faster (``benchmarks/train_throughput.py``).
The last incomplete global batch of an epoch is dropped, so every step sees full, equally sized batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class BatchPlan:
    """The batch order of a run.

    Attributes:
        num_examples: examples per epoch (indices ``0 .. num_examples - 1``).
        batch_size: examples per micro-batch per process.
        world_size: number of processes.
        seed: seed of the order.
        group_by_length: sort by length inside mega-chunks (needs ``length_of``).
        group_size: global batches per mega-chunk.
        length_of: ``index -> token length`` of an example (used only with ``group_by_length``).
    """

    num_examples: int
    batch_size: int
    world_size: int = 1
    seed: int = 0
    group_by_length: bool = False
    group_size: int = 32
    length_of: Callable[[int, int], int] | None = None

    def __post_init__(self) -> None:
        if self.global_batch_size > self.num_examples:
            raise ValueError(
                f"batch_size {self.batch_size} x {self.world_size} process(es) = {self.global_batch_size} examples "
                f"per step, but an epoch has only {self.num_examples}; lower train.batch_size or add data"
            )
        if self.group_by_length and self.length_of is None:
            raise ValueError("group_by_length needs a length_of(epoch, index) function")
        self._cache: dict[int, list[np.ndarray]] = {}

    @property
    def global_batch_size(self) -> int:
        """Examples per micro-step over all processes."""
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Global micro-batches per epoch (the incomplete last one is dropped)."""
        return self.num_examples // self.global_batch_size

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if epoch in self._cache:
            return self._cache[epoch]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_examples)
        gbs = self.global_batch_size
        usable = self.batches_per_epoch * gbs
        if not self.group_by_length:
            batches = [order[i : i + gbs] for i in range(0, usable, gbs)]
        else:
            assert self.length_of is not None
            batches = []
            chunk = gbs * self.group_size
            for start in range(0, usable, chunk):
                idx = order[start : min(start + chunk, usable)]
                lengths = np.array([self.length_of(epoch, int(i)) for i in idx])
                idx = idx[np.argsort(-lengths, kind="stable")]
                group = [idx[i : i + gbs] for i in range(0, len(idx), gbs)]
                # Keep the longest batch first, shuffle the rest (so steps do not run long-to-short).
                rest = [group[i] for i in rng.permutation(np.arange(1, len(group)))] if len(group) > 1 else []
                batches.extend([group[0], *rest])
        self._cache = {epoch: batches}  # one epoch at a time is enough; keeps memory flat on long runs
        return batches

    def global_batch(self, position: int) -> list[int]:
        """Example indices of global batch number ``position`` (counted from the start of the run)."""
        epoch, within = divmod(position, self.batches_per_epoch)
        return [int(i) for i in self._epoch_batches(epoch)[within]]

    def local_batch(self, position: int, rank: int) -> tuple[int, list[int]]:
        """``(epoch, indices)`` of process ``rank``'s micro-batch at ``position``."""
        epoch = position // self.batches_per_epoch
        indices = self.global_batch(position)
        return epoch, indices[rank * self.batch_size : (rank + 1) * self.batch_size]
