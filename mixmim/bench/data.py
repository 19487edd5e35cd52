"""Decode + augmentation throughput of a dataset through a DataLoader (``mixmim-bench bench --data``).

Measured apart from the training step, to show whether loading or compute bounds a run. Two decode paths:
``cpu`` (:func:`benchmark_data`: Pillow decode and the transform in the workers) and ``gpu``
(:func:`benchmark_gpu_decode`: the workers read JPEG bytes and draw the crop, the device decodes a batch at a
time, :mod:`mixmim.data.gpu_decode`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mixmim.data.gpu_decode import EncodedImages


@dataclass
class DataStats:
    """Decode + augmentation throughput of a dataset through a DataLoader."""

    workers: int
    batch_size: int
    batches: int
    seconds: float
    images_per_s: float
    images_per_s_per_worker: float  # per process doing the decoding (the main process when workers=0)
    decode: str = "cpu"  # cpu: decoded in the workers | gpu: JPEG bytes decoded on the device


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
    loader = _loader(_Transformed(dataset, transform), workers, batch_size, seed)
    return _time_batches(loader, batches, len, workers, batch_size, "cpu")


def benchmark_gpu_decode(
    samples: list[tuple[str, int]],
    img_size: int,
    workers: int,
    batches: int,
    device: torch.device | str,
    batch_size: int = 64,
    crop_min_scale: float = 0.2,
    seed: int = 0,
) -> DataStats:
    """Images/s of the GPU decode path: workers read the JPEG ``samples`` (``(path, label)``) and draw the crop,
    :func:`~mixmim.data.gpu_decode.decode_batch` decodes, crops, flips and normalises each batch on ``device``
    (timed to the end of the device's work)."""
    device = torch.device(device)
    dataset = EncodedImages(samples, img_size, crop_min_scale)
    loader = _loader(dataset, workers, batch_size, seed, dataset.collate)

    def decode(batch: tuple) -> int:
        images = batch[0].decode(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return len(images)

    return _time_batches(loader, batches, decode, workers, batch_size, "gpu")


def _loader(dataset: Dataset, workers: int, batch_size: int, seed: int, collate: Callable | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed), drop_last=False)  # fmt: skip


def _time_batches(loader: DataLoader, batches: int, consume: Callable[[Any], int], workers: int, batch_size: int,
                  decode: str) -> DataStats:  # fmt: skip
    """Time ``batches`` batches of ``loader`` (``consume``: a batch -> its image count), the first one untimed."""
    it = iter(loader)
    consume(next(it))  # worker start-up, the first batch (and the device's first decode) are not timed
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        count += consume(batch)
    seconds = time.perf_counter() - start
    rate = count / seconds if seconds > 0 else math.nan
    return DataStats(workers=workers, batch_size=batch_size, batches=batches, seconds=seconds, images_per_s=rate,
                     images_per_s_per_worker=rate / max(workers, 1), decode=decode)  # fmt: skip
