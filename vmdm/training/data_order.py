"""The order training data are served in: a pure function of (seed, epoch, index), so a run
is the same however it is resumed or split across processes and DataLoader workers."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from vmdm.data.dataset import MotionDataset

__all__ = ["SeededItems", "EpochBatches"]


class SeededItems(Dataset):
    """Items keyed by ``(epoch, index)``: crop windows and caption choices come from a
    generator seeded by the key, so the data stream is identical however it is resumed
    or split across DataLoader workers."""

    def __init__(self, dataset: MotionDataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, idx = key
        self.dataset.rng = np.random.default_rng([self.seed, epoch, idx])
        return self.dataset[idx]


class EpochBatches:
    """Infinite batches of ``(epoch, index)`` keys: a seeded permutation per epoch, cut into
    global batches, each rank taking its slice (the global batch is preserved)."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 start: tuple[int, int] = (0, 0)):
        if global_batch % world:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world} processes")
        if n < global_batch:
            raise ValueError(f"dataset has {n} clips, fewer than one global batch of {global_batch}")
        self.n, self.gb, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.per_rank = global_batch // world
        self.batches_per_epoch = n // global_batch
        self.start = start

    def __iter__(self):
        epoch, b = self.start
        while True:
            perm = np.random.default_rng([self.seed, 1_000_003, epoch]).permutation(self.n)
            for k in range(b, self.batches_per_epoch):
                glob = perm[k * self.gb:(k + 1) * self.gb]
                mine = glob[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
                yield [(epoch, int(i)) for i in mine]
            epoch, b = epoch + 1, 0

    def position_after(self, consumed: int) -> tuple[int, int]:
        """Data position after ``consumed`` batches from the start position."""
        total = self.start[0] * self.batches_per_epoch + self.start[1] + consumed
        return divmod(total, self.batches_per_epoch)
