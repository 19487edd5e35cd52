"""Decode + augmentation throughput of a dataset through a DataLoader (``mixmim-bench bench --data``).

Measured apart from the training step, to show whether loading or compute bounds a run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass
class DataStats:
    """Decode + augmentation throughput of a dataset through a DataLoader."""

    workers: int
    batch_size: int
    batches: int
    seconds: float
    images_per_s: float
    images_per_s_per_worker: float  # per process doing the decoding (the main process when workers=0)


class _Transformed(Dataset):
    """``transform`` applied to the first element of every sample of ``dataset`` (in the worker)."""

    def __init__(self, dataset: Dataset, transform: Callable | None):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        image = sample[0] if isinstance(sample, tuple | list) else sample
        return self.transform(image) if self.transform is not None else image


def benchmark_data(
    dataset: Dataset, transform: Callable | None, workers: int, batches: int, batch_size: int = 64, seed: int = 0
) -> DataStats:
    """Images/s of decoding + ``transform`` through a DataLoader with ``workers`` processes.

    ``dataset`` yields raw samples (a PIL image, or a tuple starting with one: build it without a transform);
    the first batch (worker start-up) is not timed. ``images_per_s_per_worker`` divides by the processes
    that decode (``max(workers, 1)``).
    """
    if batches < 1:
        raise ValueError("batches must be at least 1")
    loader = DataLoader(
        _Transformed(dataset, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
    )
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not timed
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        count += len(batch)
    seconds = time.perf_counter() - start
    rate = count / seconds if seconds > 0 else math.nan
    return DataStats(
        workers=workers,
        batch_size=batch_size,
        batches=batches,
        seconds=seconds,
        images_per_s=rate,
        images_per_s_per_worker=rate / max(workers, 1),
    )
