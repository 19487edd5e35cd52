"""Samplers: a resumable, seeded shuffle shared by all ranks, and a plain one for evaluation.

Training always uses :class:`ResumableSampler`. The order of epoch ``e`` is one global permutation
``perm = randperm(N, stream_seed(seed, e))``, identical on every rank and every restart (for seed 0 the same
permutation ``torch.utils.data.DistributedSampler`` draws; other seeds use ``seed * SEED_STRIDE + e``, so seed
1's first epoch is not seed 0's second). Global micro-batch ``s`` is ``perm[s*B : (s+1)*B]`` with
``B = world_size * batch_size``; rank ``r`` takes its contiguous slice ``perm[s*B + r*b : s*B + (r+1)*b]``.
So a step of ``W`` ranks x batch ``b`` sees exactly the images of the same step of one rank x batch ``W*b``
(the gradient-scaling check compares the two), and one rank's order is ``perm`` itself. Nothing is padded:
the last partial global batch is cut into whatever slices it holds (the loader drops partial batches).

``set_epoch(e, start=k)`` skips the first ``k`` samples of this rank's share (``k`` = micro-steps done x
``batch_size``), so a resumed run continues at the exact next batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler, Sampler, SequentialSampler

SEED_STRIDE = 1_000_000_007  # a prime far above any rank, epoch or event count a stream index adds


def stream_seed(seed: int, index: int) -> int:
    """The seed of stream ``index`` (an epoch here; a rank in the trainer's reseeding) of run seed ``seed``:
    ``seed * SEED_STRIDE + index``.

    Distinct for distinct ``(seed, index)`` while ``index < SEED_STRIDE`` (``seed + index`` made seed 1's
    rank-0 stream seed 0's rank-1 stream, and seed 1's epoch 0 seed 0's epoch 1); equal to ``index`` for seed
    0, so seed-0 runs draw what they always drew.
    """
    return int(seed) * SEED_STRIDE + int(index)


class ResumableSampler(Sampler[int]):
    """This rank's share of one seeded global permutation per epoch, in global-batch slices.

    Args:
        dataset: anything with ``len``.
        world_size, rank: replicas and this one's index (no process group is needed).
        shuffle: a seeded random permutation per epoch (else the dataset order).
        seed: shared by all ranks; the permutation of epoch ``e`` uses ``stream_seed(seed, e)``.
        batch_size: images per rank per micro-batch (``b``); the slice each rank takes of a global batch.
    """

    def __init__(
        self,
        dataset: Sized,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        batch_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_images, self.world_size, self.rank = len(dataset), world_size, rank
        self.shuffle, self.seed, self.batch_size = shuffle, seed, batch_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use the order of ``epoch`` and skip its first ``start`` samples (of this rank)."""
        self.epoch, self.start = epoch, start

    def global_order(self) -> torch.Tensor:
        """[N] the permutation of this epoch (all ranks together)."""
        if not self.shuffle:
            return torch.arange(self.num_images)
        generator = torch.Generator().manual_seed(stream_seed(self.seed, self.epoch))
        return torch.randperm(self.num_images, generator=generator)

    def share(self) -> list[int]:
        """This rank's whole share of the epoch: its slice of every global batch, in order."""
        order = self.global_order()
        b, global_batch = self.batch_size, self.batch_size * self.world_size
        offsets = torch.arange(0, self.num_images, global_batch) + self.rank * b  # [batches]
        return [i for offset in offsets.tolist() for i in order[offset : offset + b].tolist()]

    def __iter__(self) -> Iterator[int]:
        return iter(self.share()[self.start :])

    def share_size(self) -> int:
        """Samples of this rank in a whole epoch."""
        full, tail = divmod(self.num_images, self.batch_size * self.world_size)
        return full * self.batch_size + min(self.batch_size, max(0, tail - self.rank * self.batch_size))

    def __len__(self) -> int:
        return max(0, self.share_size() - self.start)

    def state_dict(self) -> dict[str, int]:
        """The position in the data order: ``{seed, epoch, start}`` (plain ints, checkpoint-safe)."""
        return {"seed": self.seed, "epoch": self.epoch, "start": self.start}


def eval_sampler(dataset: Sized, world_size: int = 1, rank: int = 0) -> Sampler[int]:
    """In-order sampler for evaluation: a sequential one, or a non-shuffling DistributedSampler.

    With ``world_size > 1`` the DistributedSampler pads the last batch with repeated samples so that
    every rank has the same count; exact metrics must de-duplicate (or gather with the dataset length).
    The stages evaluate with :func:`mixmim.evaluate.loaders.eval_loader` instead (strided shards, no padding).
    """
    if world_size > 1:
        return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    return SequentialSampler(dataset)
