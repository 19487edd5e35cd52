"""Samplers: a resumable, seeded shuffle (DistributedSampler) and a plain one for evaluation.

Training always uses :class:`ResumableSampler`, a ``torch.utils.data.DistributedSampler`` (with one replica
when ``world_size == 1``): the order of epoch ``e`` is a pure function of ``(seed, e)``, identical on every
rank and every restart, and each rank takes its strided share. ``set_epoch(e, start=k)`` skips the first
``k`` samples of this rank's share, so a resumed run continues at the exact next batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler, Sampler, SequentialSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start an epoch part-way through this rank's share.

    Args:
        dataset: anything with ``len``.
        world_size, rank: replicas and this one's index (no process group is needed).
        shuffle: a seeded random permutation per epoch.
        seed: shared by all ranks; the permutation of epoch ``e`` uses ``seed + e``.
        drop_last: drop the tail that does not divide by ``world_size`` instead of padding it.
    """

    def __init__(
        self,
        dataset: Sized,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use the order of ``epoch`` and skip its first ``start`` samples (of this rank)."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start

    def state_dict(self) -> dict[str, int]:
        """The position in the data order: ``{seed, epoch, start}`` (plain ints, checkpoint-safe)."""
        return {"seed": self.seed, "epoch": self.epoch, "start": self.start}


def eval_sampler(dataset: Sized, world_size: int = 1, rank: int = 0) -> Sampler[int]:
    """In-order sampler for evaluation: a sequential one, or a non-shuffling DistributedSampler.

    With ``world_size > 1`` the DistributedSampler pads the last batch with repeated samples so that
    every rank has the same count; exact metrics must de-duplicate (or gather with the dataset length).
    """
    if world_size > 1:
        return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    return SequentialSampler(dataset)
