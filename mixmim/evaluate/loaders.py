"""Evaluation data loaders: every image exactly once over all ranks, in dataset order within a rank.

Training uses the engine's :class:`~mixmim.data.ResumableSampler`. Evaluation instead gives rank ``r`` of
``W`` the strided shard ``r, r + W, r + 2W, ...`` with no padding (a ``DistributedSampler`` would repeat
images to even out the ranks), so summed counts and gathered features are exact.
"""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset

from mixmim.data import build_loader
from mixmim.engine.distributed import DistEnv


def shard_indices(num_images: int, env: DistEnv) -> range:
    """Indices of this rank's share of ``num_images``: ``range(rank, num_images, world_size)``."""
    return range(env.rank, num_images, env.world_size)


def eval_loader(dataset: Dataset, batch_size: int, env: DistEnv, num_workers: int = 0) -> DataLoader:
    """In-order loader over this rank's shard of ``dataset``; keeps the last partial batch."""
    shard = dataset if env.world_size == 1 else Subset(dataset, shard_indices(len(dataset), env))
    return build_loader(shard, batch_size, SequentialSampler(shard), num_workers, drop_last=False, seed=0)
