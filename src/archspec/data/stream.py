"""Batches from a memory-mapped table, built in DataLoader worker processes: the one batching path
of train, evaluate, predict and the baselines.

**Map-style, over row positions** (not an iterable over shards), because the table is a
memory-mapped Arrow file (:mod:`.store`) where reading any row costs the same as reading the next
one. That buys what the training loop promises and an iterable dataset makes hard: a shuffle of the
*whole* split (not of a buffer), fixed by ``(seed, epoch)`` alone and identical for any number of
workers or processes; resuming at any batch of an epoch by skipping batch keys (no row is read to
get there); and DDP shards cut from the same global batches a single process would take.

How a batch is made:

1. :class:`EpochBatchSampler` (main process) turns ``(seed, epoch)`` into a permutation of the split
   (a hash, :func:`~.tables.permutation`, identical on every machine), cuts it into global batches of
   ``batch_size`` rows and, under DDP, gives rank ``r`` the ``r``-th contiguous part of every global
   batch, so each rank reads only its own rows and the ranks together read exactly what one process
   would. It yields a :class:`BatchKey` ``(epoch, index, positions)`` per batch.
2. :class:`RowDataset` (worker process) takes those rows from the table (only the columns the spec
   reads), decodes and resizes images, tokenizes text and converts labels with the fitted
   :class:`~.preprocess.Preprocessor`, and returns tensors. Before that it seeds ``random``, numpy
   and torch from ``(seed, epoch, index)``, so anything random in a transform depends on the batch,
   never on which worker made it.
3. Rows whose values cannot be used are reported with their file row and column: the loader raises
   a :class:`~archspec.errors.DataError` (``on_bad_row: error``) or leaves them out of the batch and
   counts them (``skip``).

Memory: the table is memory-mapped (pages, not heap), a batch holds ``batch_size`` rows, and
``prefetch_factor`` batches per worker are in flight; nothing grows with the number of rows.

Under DDP, a last global batch that cannot be cut into equal parts is dropped (every rank must take
the same steps, and unequal parts would weight rows unequally); with one process nothing is dropped.
"""

from __future__ import annotations

import math
import os
import random
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .problems import data_error
from .tables import permutation

#: batches each worker prepares ahead of the training step
PREFETCH = 2


class BatchKey(NamedTuple):
    """What a worker needs to build one batch: the epoch, the batch's index in it, and its row positions."""

    epoch: int
    index: int
    positions: tuple


def default_workers(checked) -> int:
    """``training.num_workers`` when set; otherwise 0 for specs without a heavy input (image, text:
    batches of numbers cost almost nothing to build) and ``min(8, CPUs − 1)`` for the rest.

    Example:
        >>> from archspec.pipeline import check_text
        >>> c = check_text("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a]}}\\n"
        ...                "heads: {y: {type: regression, from: x}}\\n")
        >>> default_workers(c)
        0
    """
    t = checked.spec.training
    if t.num_workers is not None:
        return int(t.num_workers)
    from .inputs import input_data

    if not any(input_data(cfg.type).heavy for cfg in checked.spec.inputs.values()):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus - 1))


def batches_per_epoch(n_rows: int, batch_size: int, world_size: int = 1) -> int:
    """Batches each rank takes in one epoch of ``n_rows`` with global batches of ``batch_size``.

    Example:
        >>> batches_per_epoch(10, 4), batches_per_epoch(10, 4, 2), batches_per_epoch(9, 4, 2)
        (3, 3, 2)
    """
    full = math.ceil(n_rows / batch_size)
    if world_size > 1 and n_rows % batch_size and (n_rows % batch_size) % world_size:
        full -= 1  # the last batch cannot be cut into equal parts
    return full


class EpochBatchSampler(Sampler):
    """:class:`BatchKey` per batch, in an order fixed by ``(seed, epoch)``; this rank's part only.

    Args:
        positions: the split's row positions in the table.
        batch_size: rows per global batch (all ranks together).
        shuffle: shuffle by ``(seed, epoch)``, or keep the order of ``positions`` (evaluation).
        seed: ``training.seed``.
        rank / world_size: this process and how many there are.

    Example:
        >>> s = EpochBatchSampler(range(10), 4, shuffle=False)
        >>> [list(k.positions) for k in s]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        >>> s.set_epoch(0, start_batch=2); [k.index for k in s]
        [2]
        >>> [list(k.positions) for k in EpochBatchSampler(range(10), 4, shuffle=False, rank=1, world_size=2)]
        [[2, 3], [6, 7], [9]]
    """

    def __init__(self, positions, batch_size: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        self.positions = np.asarray(positions, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Move to another epoch (and optionally start it mid-way, to resume)."""
        if start_batch < 0:
            raise ValueError("start_batch must be ≥ 0")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def order(self) -> np.ndarray:
        """The epoch's row positions, all ranks together."""
        if not self.shuffle:
            return self.positions
        return self.positions[permutation(len(self.positions), self.seed, self.epoch, 0xE90C)]

    def batches(self) -> int:
        """Batches in a whole epoch for this rank."""
        return batches_per_epoch(len(self.positions), self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[BatchKey]:
        order = self.order()
        for b in range(self.start_batch, self.batches()):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            share = rows[self.rank * len(rows) // self.world_size:(self.rank + 1) * len(rows) // self.world_size]
            yield BatchKey(self.epoch, b, tuple(share.tolist()))

    def __len__(self) -> int:
        return max(0, self.batches() - self.start_batch)


def _seed_everything(seed: int, epoch: int, index: int) -> None:
    s = np.random.SeedSequence([seed, epoch, index]).generate_state(2)
    random.seed(int(s[0]))
    np.random.seed(int(s[0]))
    torch.manual_seed(int(s[0]) << 32 | int(s[1]))


class RowDataset(Dataset):
    """Maps a :class:`BatchKey` to a finished batch (a dict; see :meth:`__getitem__`).

    Args:
        table: a :class:`~.store.Table` (opened again in each worker process: memory-mapped).
        preprocessor: the fitted :class:`~.preprocess.Preprocessor`.
        targets: also build the targets (``False`` for prediction).
        inputs: input names to build (default all; e.g. none when only labels are needed).
        seed: ``training.seed`` (per-batch seeds derive from it).
        name: what the rows are for (``train``, ``validation``, ...).
    """

    def __init__(self, table, preprocessor, *, targets: bool = True, inputs=None, seed: int = 0, name: str = ""):
        from pathlib import Path

        self.name = name
        self.table, self.pre, self.targets, self.inputs, self.seed = table, preprocessor, targets, inputs, int(seed)
        self.data_dir = Path(table.source).resolve().parent
        self.columns = preprocessor.columns(table.columns, targets=targets, inputs=inputs)

    def __getitem__(self, key: BatchKey) -> dict:
        """``{"inputs", "targets": {key: tensor}, "rows": file rows (B,), "problems": [...], "dropped": [rows]}``.

        Problem rows are left out of the tensors; ``problems`` lists (up to 50 of) their problems and
        ``dropped`` the file rows left out.
        """
        if torch.utils.data.get_worker_info() is not None:
            _seed_everything(self.seed, key.epoch, key.index)  # never the main process's RNG (dropout)
        df = self.table.take(list(key.positions), self.columns)
        inputs, targets, problems = self.pre.arrays(df, self.data_dir, targets=self.targets, inputs=self.inputs)
        rows = df.index.to_numpy(dtype=np.int64, copy=True)
        dropped: list = []
        if problems:
            bad = {p.row for p in problems}
            keep = np.asarray([r not in bad for r in rows], dtype=bool)
            dropped = rows[~keep].tolist()
            inputs = {k: v[keep] for k, v in inputs.items()}
            targets = {k: v[keep] for k, v in targets.items()}
            rows = rows[keep]
        return {"inputs": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()},
                "targets": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in targets.items()},
                "rows": torch.from_numpy(rows), "problems": problems[:50], "dropped": dropped}


def _identity(batch):
    return batch


def _worker_init(_):
    torch.set_num_threads(1)  # workers share the machine's cores with the training process


class Loader:
    """One split's batches, epoch after epoch, from worker processes kept alive between epochs.

    Iterating yields ``(inputs, targets, rows)`` per batch (dicts of tensors, and the batch's file
    rows; a batch whose every row was skipped has 0 rows). Rows with problems raise a located :class:`~archspec.errors.DataError` with
    ``on_bad_row="error"``; with ``"skip"`` they are left out and counted in :attr:`skipped`.

    Args:
        table: the data file (:func:`~.store.open_table`).
        preprocessor: the fitted preprocessor.
        positions: the split's row positions (default: every row, in file order).
        batch_size: rows per global batch (all ranks together).
        shuffle: shuffle per epoch (training) or keep the order (evaluation, prediction).
        seed: ``training.seed``.
        rank / world_size: default from ``torch.distributed`` when initialised, else 0 / 1.
        num_workers: worker processes (0: build batches in this process).
        pin_memory: pin batches for faster host→GPU copies (on CUDA).
        targets: build the targets.
        inputs: input names to build (default all).
        on_bad_row: ``error`` or ``skip``.
        name: what the rows are for (``train``, ``validation``, ...).

    Example:
        >>> import os, tempfile, pandas as pd
        >>> from archspec.data import Preprocessor, open_table
        >>> d = tempfile.mkdtemp(); os.environ.setdefault("ARCHSPEC_CACHE_DIR", d) and None
        >>> p = os.path.join(d, "t.csv"); pd.DataFrame({"a": range(5), "y": range(5)}).to_csv(p, index=False)
        >>> spec = ("archspec: 1\\nname: m\\ninputs: {x: {type: numeric, columns: [a], normalize: none}}\\n"
        ...         "heads: {y: {type: regression, from: x}}\\n")
        >>> table = open_table(p); pre = Preprocessor.fit(spec, table.take(range(5)))
        >>> [b[0]["x"][:, 0].tolist() for b in Loader(table, pre, batch_size=2, shuffle=False)]
        [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """

    def __init__(self, table, preprocessor, positions=None, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None, num_workers: int = 0,
                 pin_memory: bool = False, targets: bool = True, inputs=None, on_bad_row: str = "error",
                 name: str = ""):
        if rank is None or world_size is None:
            auto_rank, auto_world = _dist_rank_world()
            rank = auto_rank if rank is None else rank
            world_size = auto_world if world_size is None else world_size
        positions = np.arange(table.num_rows) if positions is None else positions
        self.file = str(table.source)
        self.on_bad_row = on_bad_row
        self.sampler = EpochBatchSampler(positions, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                                         world_size=world_size)
        self.dataset = RowDataset(table, preprocessor, targets=targets, inputs=inputs, seed=seed, name=name)
        if num_workers > 0:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers + fork can deadlock
        # A private generator: DataLoader otherwise draws its base seed from the global RNG, which
        # would shift dropout and initialisation after a resume.
        self.loader = DataLoader(self.dataset, batch_size=None, sampler=self.sampler, collate_fn=_identity,
                                 num_workers=num_workers, pin_memory=pin_memory,
                                 persistent_workers=num_workers > 0, worker_init_fn=_worker_init,
                                 prefetch_factor=PREFETCH if num_workers > 0 else None,
                                 generator=torch.Generator().manual_seed(int(seed)))
        self.skipped_rows: set = set()
        self.skip_examples: list = []

    def epoch(self, epoch: int, start_batch: int = 0) -> "Loader":
        """Set the epoch (and the batch to start at) for the next iteration; returns ``self``."""
        self.sampler.set_epoch(epoch, start_batch)
        return self

    def __len__(self) -> int:
        return len(self.sampler)

    def batches(self) -> int:
        """Batches in a whole epoch (whatever the start batch)."""
        return self.sampler.batches()

    def __iter__(self):
        for batch in self.loader:
            if batch["problems"]:
                if self.on_bad_row != "skip":
                    raise data_error(batch["problems"], self.file)
                self.skipped_rows.update(batch["dropped"])
                self.skip_examples += batch["problems"][: max(0, 5 - len(self.skip_examples))]
            yield batch["inputs"], batch["targets"], batch["rows"]

    @property
    def skipped(self) -> int:
        """Distinct rows left out so far (``on_bad_row: skip``)."""
        return len(self.skipped_rows)

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the loader is garbage-collected)."""
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader._iterator = None


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
