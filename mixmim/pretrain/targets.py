"""Pixel reconstruction targets: patchify / unpatchify and per-patch normalisation (``norm_pix_loss``)."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, (H/p)*(W/p), p*p*3], pixels in (row, col, channel) order as the official code."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not divisible into {patch}x{patch} patches")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: [B, h*w, p*p*3] -> [B, 3, h*p, w*p]."""
    b = patches.shape[0]
    h, w = grid
    x = patches.reshape(b, h, w, patch, patch, 3)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, 3, h * patch, w * patch)


def pixel_targets(images: torch.Tensor, patch: int, norm_pix: bool, eps: float = 1e-6) -> torch.Tensor:
    """Reconstruction targets [B, L, p*p*3]; with ``norm_pix`` each patch is normalised by its mean and
    *unbiased* variance, ``(x - mean) / sqrt(var + eps)``, as the official MixMIM and MAE."""
    target = patchify(images, patch)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps) ** 0.5
    return target
