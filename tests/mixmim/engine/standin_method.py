"""A tiny stand-in pre-training method for engine tests, until the real MixMIM method lands.

``TinyMaskedAutoencoder`` implements the method contract of ``docs/architecture.md``: ``forward(images,
mask=None) -> {"loss", "pred", "mask"}``, an ``encoder`` with ``layer_id``/``num_layers``/``no_weight_decay``,
a seeded ``generator`` (``reseed``) that draws the mask, and ``lr_scale_base``. It uses dropout, so it draws
from torch's global generator too. Test hooks: ``nan_at_calls`` (forward calls that return a NaN loss)
and ``step_delay`` (seconds to sleep per forward, to give a killer time to strike mid-step).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


class TinyEncoder(nn.Module):
    """Patch embedding (stride 4) + ``depth`` conv blocks + norm; the backbone interface in miniature."""

    def __init__(self, img_size: int = 16, dim: int = 16, depth: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.img_size, self.patch_size = img_size, 4
        self.grid_size = (img_size // 4, img_size // 4)
        self.num_layers = depth
        self.num_features = dim
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *self.grid_size))
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU()) for _ in range(depth))
        self.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))  # 2-D, like the real tables
        self.norm = nn.GroupNorm(1, dim)
        self.head = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)  # [B, C, h, w]

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + self.pos_embed
        for block in self.blocks:
            x = x + block(x)
        return self.norm(x + 0 * self.relative_position_bias_table.sum())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))

    def layer_id(self, name: str) -> int:
        if name.startswith(("patch_embed", "pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        if name.startswith("relative_position_bias_table"):
            return 1
        return self.num_layers + 1  # final norm and head

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "relative_position_bias_table"}


class TinyMaskedAutoencoder(nn.Module):
    """Mask patches (one mask per batch from ``generator``), encode, decode, MSE on the masked pixels."""

    lr_scale_base = 256

    def __init__(self, img_size: int = 16, dim: int = 16, mask_ratio: float = 0.5, step_delay: float = 0.0) -> None:
        super().__init__()
        self.encoder = TinyEncoder(img_size, dim, num_classes=0)  # no head: every parameter gets a gradient
        self.mask_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.dropout = nn.Dropout(0.1)
        self.decoder = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.ConvTranspose2d(dim, 3, 4, 4))
        self.mask_ratio = mask_ratio
        self.generator = torch.Generator().manual_seed(0)
        self.step_delay = step_delay
        self.nan_at_calls: set[int] = set()
        self.calls = 0

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def random_mask(self) -> torch.Tensor:
        """``[1, 1, h, w]``: 1 = masked, ``mask_ratio`` of the cells, shared by the batch."""
        h, w = self.encoder.grid_size
        noise = torch.rand(h * w, generator=self.generator)
        mask = torch.zeros(h * w)
        mask[noise.argsort()[: int(h * w * self.mask_ratio)]] = 1.0
        return mask.view(1, 1, h, w)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.step_delay:
            time.sleep(self.step_delay)
        mask = (self.random_mask() if mask is None else mask).to(images)  # [1, 1, h, w]
        tokens = self.encoder.embed(images)  # [B, C, h, w]
        tokens = tokens * (1 - mask) + self.mask_token * mask
        pred = self.decoder(self.dropout(self.encoder.forward_tokens(tokens)))  # [B, 3, H, W]
        pixel_mask = F.interpolate(mask, size=images.shape[-2:], mode="nearest")  # [1, 1, H, W]
        loss = (((pred - images) ** 2) * pixel_mask).sum() / (pixel_mask.sum() * images.shape[0] * 3)
        if self.calls in self.nan_at_calls:
            loss = loss * float("nan")
        return {"loss": loss, "pred": pred, "mask": mask}
