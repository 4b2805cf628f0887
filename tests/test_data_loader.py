"""The one batching path: order fixed by (seed, epoch), resumable mid-epoch, sharded for DDP, rows read
lazily from the cached table, workers seeded per batch, the global RNG untouched."""

import numpy as np
import pandas as pd
import pytest
import torch

from archspec.data import EpochBatchSampler, Loader, Preprocessor, batches_per_epoch, open_table

N = 23
SPEC = ("archspec: 1\nname: m\ninputs: {x: {type: numeric, columns: [a], normalize: none}}\n"
        "heads: {y: {type: regression, from: x}}\n")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    pd.DataFrame({"a": np.arange(N, dtype=float), "y": np.arange(N, dtype=float)}).to_csv(d / "t.csv", index=False)
    t = open_table(d / "t.csv")
    return t, Preprocessor.fit(SPEC, t.take(range(N)))


def rows(loader):
    return [b[2].tolist() for b in loader]


def test_batches_are_dicts_of_aligned_tensors(table):
    t, pre = table
    x, y, r = next(iter(Loader(t, pre, batch_size=5, shuffle=True, seed=1)))
    assert set(x) == {"x"} and set(y) == {"y"} and x["x"].shape == (5, 1) and y["y"].shape == (5, 1)
    assert x["x"][:, 0].long().tolist() == r.tolist() == y["y"][:, 0].long().tolist()  # rows stay aligned


def test_order_is_fixed_by_seed_and_epoch(table):
    t, pre = table

    def epoch(seed, e, shuffle=True):
        return rows(Loader(t, pre, batch_size=4, shuffle=shuffle, seed=seed).epoch(e))

    a = epoch(7, 3)
    assert a == epoch(7, 3) and a != epoch(7, 4) and a != epoch(8, 3)
    assert sorted(sum(a, [])) == list(range(N)) and [len(b) for b in a] == [4] * 5 + [3]
    assert sum(epoch(7, 3, shuffle=False), []) == list(range(N))


def test_resume_mid_epoch_gives_the_rest_of_the_same_epoch(table):
    t, pre = table
    loader = Loader(t, pre, batch_size=4, shuffle=True, seed=0)
    full = rows(loader.epoch(2))
    for k in range(len(full) + 1):
        assert rows(loader.epoch(2, k)) == full[k:] and len(loader) == len(full) - k


def test_workers_give_the_same_batches_and_leave_the_global_rng_alone(table):
    t, pre = table
    torch.manual_seed(123)
    before = torch.get_rng_state()
    ref = rows(Loader(t, pre, batch_size=4, shuffle=True, seed=3).epoch(1))
    loader = Loader(t, pre, batch_size=4, shuffle=True, seed=3, num_workers=2)
    try:
        assert rows(loader.epoch(1)) == ref
        assert rows(loader.epoch(1, 2)) == ref[2:]  # persistent workers, a new start position
    finally:
        loader.close()
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_read_disjoint_parts_of_the_same_global_batches(table, world):
    t, pre = table
    single = rows(Loader(t, pre, batch_size=6, shuffle=True, seed=5, rank=0, world_size=1).epoch(1))
    per_rank = [rows(Loader(t, pre, batch_size=6, shuffle=True, seed=5, rank=r, world_size=world).epoch(1))
                for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1  # every rank takes the same number of steps
    assert len(per_rank[0]) == batches_per_epoch(N, 6, world)
    for b in range(len(per_rank[0])):
        parts = [p[b] for p in per_rank]
        assert sum(parts, []) == single[b]  # rank r reads the r-th part of the global batch, nothing else
        assert len({len(p) for p in parts}) == 1


def test_sampler_set_epoch_and_bad_arguments():
    s = EpochBatchSampler(range(10), 3, seed=1)
    first = [k.positions for k in s]
    s.set_epoch(1)
    assert [k.positions for k in s] != first
    s.set_epoch(0, start_batch=1)
    assert [k.positions for k in s] == first[1:] and [k.index for k in s] == [1, 2, 3]
    with pytest.raises(ValueError, match="rank 2 is not in a world of size 2"):
        EpochBatchSampler(range(10), 3, rank=2, world_size=2)
