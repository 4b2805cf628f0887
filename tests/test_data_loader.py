"""Batches: order fixed by (seed, epoch), resumable mid-epoch, sharded for DDP, global RNG untouched."""

import pytest
import torch
from torch.utils.data import DistributedSampler

from archspec.data import EpochBatchSampler, TensorDictDataset, batches_per_epoch, make_loader

N = 23


def data():
    inputs = {"x": torch.arange(N, dtype=torch.float32).unsqueeze(1), "t": torch.arange(N * 2).reshape(N, 2)}
    targets = {"y": torch.arange(N)}
    return inputs, targets


def rows(loader):
    return [b[1]["y"].tolist() for b in loader]


def test_batches_are_dicts_of_aligned_tensors():
    inputs, targets = data()
    batch_in, batch_t = next(iter(make_loader(inputs, targets, 5, True, seed=1, epoch=0)))
    assert set(batch_in) == {"x", "t"} and set(batch_t) == {"y"}
    assert batch_in["x"].shape == (5, 1) and batch_in["t"].shape == (5, 2)
    assert batch_in["x"][:, 0].long().tolist() == batch_t["y"].tolist()  # rows stay aligned


def test_order_is_fixed_by_seed_and_epoch():
    inputs, targets = data()
    a = rows(make_loader(inputs, targets, 4, True, seed=7, epoch=3))
    assert a == rows(make_loader(inputs, targets, 4, True, seed=7, epoch=3))
    assert a != rows(make_loader(inputs, targets, 4, True, seed=7, epoch=4))
    assert a != rows(make_loader(inputs, targets, 4, True, seed=8, epoch=3))
    assert sorted(sum(a, [])) == list(range(N)) and [len(b) for b in a] == [4] * 5 + [3]
    assert sum(rows(make_loader(inputs, targets, 4, False, seed=7, epoch=3)), []) == list(range(N))


def test_resume_mid_epoch_gives_the_rest_of_the_same_epoch():
    inputs, targets = data()
    full = rows(make_loader(inputs, targets, 4, True, seed=0, epoch=2))
    for k in range(len(full) + 1):
        loader = make_loader(inputs, targets, 4, True, seed=0, epoch=2, start_batch=k)
        assert rows(loader) == full[k:] and len(loader) == len(full) - k


def test_loader_never_touches_the_global_rng():
    inputs, targets = data()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for _ in make_loader(inputs, targets, 4, True, seed=0, epoch=0, start_batch=2):
        pass
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_share_an_epoch_evenly(world):
    inputs, targets = data()
    per_rank = [sum(rows(make_loader(inputs, targets, 4, True, seed=5, epoch=1, rank=r, world_size=world)), [])
                for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1  # every rank takes the same number of steps
    assert set().union(*per_rank) == set(range(N))
    assert sum(len(p) for p in per_rank) - N < world  # padding repeats fewer than world_size rows
    assert len(make_loader(inputs, targets, 4, True, seed=5, epoch=1, rank=0, world_size=world)) == \
        batches_per_epoch(N, 4, world)


def test_a_torch_distributed_sampler_can_be_passed():
    inputs, targets = data()
    ds = TensorDictDataset(inputs, targets)
    got = [sum(rows(make_loader(inputs, targets, 4, True, seed=0, epoch=1,
                                sampler=DistributedSampler(ds, num_replicas=2, rank=r, seed=0))), [])
           for r in range(2)]
    assert set(got[0]) | set(got[1]) == set(range(N)) and len(got[0]) == len(got[1]) == 12
    expect = DistributedSampler(ds, num_replicas=2, rank=0, seed=0)
    expect.set_epoch(1)
    assert got[0] == list(expect)


def test_drop_last_and_lengths():
    inputs, targets = data()
    loader = make_loader(inputs, targets, 5, True, seed=0, epoch=0, drop_last=True)
    assert [len(b) for b in rows(loader)] == [5] * 4 and len(loader) == batches_per_epoch(N, 5, drop_last=True) == 4


def test_sampler_set_epoch_and_bad_arguments():
    s = EpochBatchSampler(10, 3, seed=1, epoch=0)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0, start_batch=1)
    assert list(s) == first[1:]
    with pytest.raises(ValueError, match="rank 2 is not in a world of size 2"):
        EpochBatchSampler(10, 3, rank=2, world_size=2)
    with pytest.raises(ValueError, match="disagree on the number of rows"):
        TensorDictDataset({"x": torch.zeros(3)}, {"y": torch.zeros(4)})
