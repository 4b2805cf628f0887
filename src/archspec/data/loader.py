"""Batches for training: a dataset of tensor dicts and a sampler seeded per epoch.

Given ``(seed, epoch)`` the order of rows is fixed (a hash-based permutation, identical on every
machine and library version), a loader can start at any batch of an epoch (bit-identical resume),
and with ``world_size > 1`` each rank reads its own equal share of rows (as ``DistributedSampler``
does). Building or iterating a loader never draws from torch's global RNG, so resuming does not
shift dropout masks.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .tables import permutation


class TensorDictDataset(Dataset):
    """Rows of ``(inputs, targets)``, each a dict of tensors sharing their first dimension.

    Indexing with a list of rows returns a whole batch at once (one gather per tensor).

    Example:
        >>> import torch
        >>> ds = TensorDictDataset({"x": torch.arange(6).reshape(3, 2)}, {"y": torch.tensor([0, 1, 0])})
        >>> ds[[2, 0]][0]["x"].tolist(), len(ds)
        ([[4, 5], [0, 1]], 3)
    """

    def __init__(self, inputs: dict, targets: dict | None = None):
        self.inputs = dict(inputs)
        self.targets = dict(targets or {})
        sizes = {k: int(v.shape[0]) for k, v in {**self.inputs, **self.targets}.items()}
        if not sizes:
            raise ValueError("a dataset needs at least one tensor")
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors disagree on the number of rows: {sizes}")
        self.n = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return ({k: v[index] for k, v in self.inputs.items()}, {k: v[index] for k, v in self.targets.items()})
        idx = torch.as_tensor(index, dtype=torch.int64)
        return ({k: v.index_select(0, idx) for k, v in self.inputs.items()},
                {k: v.index_select(0, idx) for k, v in self.targets.items()})


def batches_per_epoch(n_rows: int, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
    """Batches each rank gets in one epoch of ``n_rows``.

    Example:
        >>> batches_per_epoch(10, 4), batches_per_epoch(10, 4, drop_last=True), batches_per_epoch(10, 4, 2)
        (3, 2, 2)
    """
    per_rank = math.ceil(n_rows / world_size)
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)


class EpochBatchSampler(Sampler):
    """Lists of row indices, one list per batch, in an order fixed by ``(seed, epoch)``.

    Args:
        n_rows: rows in the dataset.
        batch_size: rows per batch (per rank).
        shuffle: shuffle rows (by ``seed`` and ``epoch``) or keep file order.
        seed: ``training.seed``.
        epoch: the epoch (0-based); each epoch has its own order.
        start_batch: skip this many batches of the epoch (resume mid-epoch).
        rank: this process's rank.
        world_size: number of processes; rows are padded (by repeating the first ones of the
            epoch's order) so every rank gets the same number of batches.
        drop_last: drop a last, smaller batch.
        order: a row order to use instead of the seeded one (e.g. drawn from another sampler).
    """

    def __init__(self, n_rows: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 start_batch: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 order=None):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        if start_batch < 0:
            raise ValueError("start_batch must be ≥ 0")
        self.n_rows, self.batch_size = int(n_rows), int(batch_size)
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), int(epoch)
        self.start_batch, self.rank, self.world_size = int(start_batch), int(rank), int(world_size)
        self.drop_last = drop_last
        self._order = None if order is None else np.asarray(order, dtype=np.int64)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Move to another epoch (and optionally start it mid-way)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def rank_order(self) -> np.ndarray:
        """This rank's rows for the whole epoch, in order."""
        if self._order is not None:
            order = self._order
        elif self.shuffle:
            order = permutation(self.n_rows, self.seed, self.epoch, 0xE90C)
        else:
            order = np.arange(self.n_rows, dtype=np.int64)
        if self.world_size > 1 and len(order):
            total = math.ceil(len(order) / self.world_size) * self.world_size
            order = np.resize(order, total)  # pads by repeating from the start, as DistributedSampler does
            order = order[self.rank::self.world_size]
        return order

    def _batches(self) -> list[np.ndarray]:
        order = self.rank_order()
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches[self.start_batch:]

    def __iter__(self) -> Iterator[list[int]]:
        for b in self._batches():
            yield b.tolist()

    def __len__(self) -> int:
        full = batches_per_epoch(len(self._order) if self._order is not None else self.n_rows,
                                 self.batch_size, self.world_size, self.drop_last)
        return max(0, full - self.start_batch)


def _as_batch(batch):
    return batch  # the dataset already returns whole batches


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def make_loader(inputs: dict, targets: dict | None, batch_size: int, shuffle: bool, seed: int, epoch: int,
                sampler: Sampler | None = None, *, start_batch: int = 0, rank: int | None = None,
                world_size: int | None = None, drop_last: bool = False, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A loader over one epoch that yields ``(inputs, targets)`` batches (dicts of tensors).

    Args:
        inputs: input tensors from :meth:`Preprocessor.transform`.
        targets: target tensors (``{}`` or ``None`` for prediction).
        batch_size: rows per batch (per rank).
        shuffle: shuffle by ``(seed, epoch)``; ``False`` keeps the file order (evaluation).
        seed: ``training.seed``.
        epoch: 0-based epoch; the same ``(seed, epoch)`` always gives the same batches.
        sampler: optional sampler of row indices to use instead (e.g. a weighted sampler); its
            ``set_epoch(epoch)`` is called when it has one, and its order is then batched here.
        start_batch: first batch to yield (resume in the middle of an epoch).
        rank: this process's rank (default: from ``torch.distributed`` when initialised, else 0).
        world_size: number of processes (default: from ``torch.distributed``, else 1).
        drop_last: drop a last, smaller batch (e.g. to keep batch norm away from a batch of 1).
        num_workers: worker processes (``training.num_workers``).
        pin_memory: pin batches for faster host→GPU copies.

    Returns:
        a :class:`~torch.utils.data.DataLoader`; ``len()`` is the number of batches it will yield.

    Example:
        >>> import torch
        >>> dl = make_loader({"x": torch.arange(5.0)}, {}, 2, shuffle=True, seed=0, epoch=1, start_batch=1)
        >>> len(dl), sum(len(b[0]["x"]) for b in dl)
        (2, 3)
    """
    dataset = TensorDictDataset(inputs, targets)
    if rank is None or world_size is None:
        auto_rank, auto_world = _dist_rank_world()
        rank = auto_rank if rank is None else rank
        world_size = auto_world if world_size is None else world_size
    order = None
    if sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        order = list(iter(sampler))
        if getattr(sampler, "num_replicas", 1) > 1:
            world_size, rank = 1, 0  # a DistributedSampler already took this rank's share
    batches = EpochBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                start_batch=start_batch, rank=rank, world_size=world_size,
                                drop_last=drop_last, order=order)
    # A private generator: DataLoader otherwise draws its worker base seed from the global RNG,
    # which would shift dropout and initialisation after a resume.
    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (1 << 63))
    return DataLoader(dataset, batch_size=None, sampler=batches, collate_fn=_as_batch, num_workers=num_workers,
                      pin_memory=pin_memory, generator=generator)
