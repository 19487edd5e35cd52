"""The data benchmark: decode + augmentation through a DataLoader."""

from __future__ import annotations

import torch
from PIL import Image

from mixmim.bench import benchmark_data
from mixmim.data import pretrain_transform


class _Images(torch.utils.data.Dataset):
    """Raw samples as a folder dataset gives them: (PIL image, label)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        return Image.new("RGB", (40, 48), color=(i * 20, 0, 0)), 0


def test_benchmark_data_counts_decoded_images():
    stats = benchmark_data(_Images(), pretrain_transform(32), workers=0, batches=2, batch_size=4)
    assert stats.images_per_s > 0 and stats.images_per_s_per_worker == stats.images_per_s
    assert stats.seconds > 0 and stats.batches == 2
