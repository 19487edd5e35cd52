"""The resumable, seeded sampler and the loader's private generator."""

from __future__ import annotations

import torch
from torch.utils.data import SequentialSampler

from mixmim.config import DataConfig
from mixmim.data import ResumableSampler, build_dataset, build_loader, eval_sampler, pretrain_transform, unpack_batch


def test_order_is_a_function_of_seed_and_epoch():
    a, b = ResumableSampler(range(100), seed=4), ResumableSampler(range(100), seed=4)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(100))
    b.set_epoch(4)
    assert list(a) != list(b)


def test_start_skips_the_consumed_part_of_the_epoch():
    full, resumed = ResumableSampler(range(50), seed=1), ResumableSampler(range(50), seed=1)
    full.set_epoch(2)
    resumed.set_epoch(2, start=20)
    assert list(resumed) == list(full)[20:] and len(resumed) == 30
    assert resumed.state_dict() == {"seed": 1, "epoch": 2, "start": 20}


def test_ranks_take_disjoint_shares():
    shares = [ResumableSampler(range(10), world_size=3, rank=r, seed=0) for r in range(3)]
    indices = [list(s) for s in shares]
    assert all(len(i) == 4 for i in indices)  # padded to equal shares
    assert set().union(*indices) == set(range(10))
    assert isinstance(eval_sampler(range(10)), SequentialSampler)
    assert len(eval_sampler(range(10), world_size=2, rank=1)) == 5


def test_creating_a_loader_iterator_leaves_the_global_rng_alone():
    dataset = build_dataset(DataConfig(digits_size=16, max_train_images=64), "train", pretrain_transform(16))
    loader = build_loader(dataset, 8, ResumableSampler(dataset, seed=0), seed=7)
    torch.manual_seed(0)
    iter(loader)
    after_iter = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_iter)
    images, labels, corrupt = unpack_batch(next(iter(loader)))
    assert images.shape == (8, 3, 16, 16) and labels.shape == (8,) and corrupt == 0
    assert unpack_batch((images, labels))[2] == 0
