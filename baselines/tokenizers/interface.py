"""The tokenizer interface of BEiT's targets: images -> one discrete visual token per target cell."""

from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn


class Tokenizer(nn.Module):
    """Maps ImageNet-normalised images to visual tokens on a grid. Frozen: never trained by the method.

    Attributes:
        vocab_size: number of distinct tokens (BEiT's ``|V|``; DALL-E: 8192).
    """

    vocab_size: int

    def forward(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """images [B, 3, H, W] (ImageNet-normalised) -> codes [B, h, w] int64 in ``[0, vocab_size)``."""
        raise NotImplementedError


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised [B, 3, H, W] -> pixels in [0, 1] (clamped)."""
    mean = images.new_tensor(IMAGENET_DEFAULT_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    return (images * std + mean).clamp(0.0, 1.0)
