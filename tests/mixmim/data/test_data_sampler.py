"""The resumable, seeded sampler and the loader's private generator."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, SequentialSampler

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


def test_ranks_take_contiguous_slices_of_one_global_order():
    """W ranks x batch b see, step by step, the images of one rank x batch W*b: no padding, nothing twice."""
    one = ResumableSampler(range(10), seed=0, batch_size=6)
    shares = [ResumableSampler(range(10), world_size=3, rank=r, seed=0, batch_size=2) for r in range(3)]
    for sampler in (one, *shares):
        sampler.set_epoch(5)
    order, indices = list(one), [list(s) for s in shares]
    assert indices == [order[0:2] + order[6:8], order[2:4] + order[8:10], order[4:6]]
    assert [len(s) for s in shares] == [4, 4, 2] and sorted(sum(indices, [])) == list(range(10))
    torch_order = DistributedSampler(range(10), num_replicas=1, rank=0, seed=0)
    torch_order.set_epoch(5)
    assert order == list(torch_order)  # one rank: the order the DistributedSampler-based sampler had
    shares[1].set_epoch(5, start=2)
    assert list(shares[1]) == order[8:10] and len(shares[1]) == 2
    with pytest.raises(ValueError, match="rank 3"):
        ResumableSampler(range(10), world_size=3, rank=3)
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
