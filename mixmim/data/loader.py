"""DataLoaders over the ``(image, label, corrupt)`` samples of :func:`mixmim.data.build_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def build_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler[int],
    num_workers: int = 0,
    drop_last: bool = True,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """A DataLoader whose own randomness comes from a generator seeded with ``seed``.

    A DataLoader draws a base seed for its workers whenever an iterator is created; with no generator it
    draws it from torch's *global* generator, which would shift the augmentation stream of a resumed run.
    The private generator keeps the global stream untouched (and seeds the workers reproducibly).

    Args:
        batch_size: per process.
        sampler: e.g. :class:`mixmim.data.sampler.ResumableSampler`.
        seed: seeds worker processes; use a different value per epoch/rank (e.g. ``seed*1000003 + epoch``).
        collate_fn: batches the samples (None: torch's default; the GPU decode path's
            :meth:`~mixmim.data.gpu_decode.EncodedImages.collate`).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_fn,
    )


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(images [B,3,H,W], labels [B], corrupt count)`` from a collated batch of 2- or 3-tuples."""
    if isinstance(batch, (list, tuple)) and len(batch) == 3:
        images, labels, corrupt = batch
        return images, labels, int(torch.as_tensor(corrupt).sum())
    images, labels = batch
    return images, labels, 0
