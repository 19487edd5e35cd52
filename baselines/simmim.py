"""SimMIM (Xie et al., arXiv 2111.09886; official microsoft/SimMIM ``models/simmim.py``) on the shared backbones.

Steps: :meth:`SimMIM.draw_mask` (per-sample random masking of 32x32-px mask units, ratio 0.6) ->
:meth:`SimMIM.forward_encoder` (a learned [MASK] token replaces the masked patch embeddings *before* the
position embedding; the encoder sees every token) -> :meth:`SimMIM.forward_decoder` (one 1x1 conv to
``stride^2 * 3`` channels + pixel shuffle back to the image) -> :meth:`SimMIM.forward_loss` (L1 on the
masked pixels, averaged over the masked pixels and the channels; raw ImageNet-normalised pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from baselines.masks import batch_mask, mask_unit_grid
from mixmim.backbones.interface import Backbone
from mixmim.device_copy import to_device
from mixmim.pretrain.masking import random_mask, upsample_mask
from mixmim.pretrain.method import PretrainMethod


class SimMIM(PretrainMethod):
    """SimMIM with its one-layer prediction head, identical on both backbones.

    Args:
        encoder: a backbone with ``num_classes=0``.
        mask_ratio: fraction of mask units masked per sample (``ceil(L * ratio)``, as the official
            ``MaskGenerator``).
        mask_unit: px per mask unit (official: 32); must be a multiple of the patch size. 0 = the encoder's
            final stride.
    """

    lr_scale_base = 512  # SimMIM: lr = base_lr * effective_batch / 512 (main_simmim.py)

    def __init__(self, encoder: Backbone, mask_ratio: float = 0.6, mask_unit: int = 32):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.mask_unit = mask_unit or encoder.strides[-1]
        self.mask_grid = mask_unit_grid(encoder, self.mask_unit, multiple_of=encoder.patch_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.stage_dims[0]))
        trunc_normal_(self.mask_token, std=0.02)
        self.encoder_stride = encoder.strides[-1]
        self.decoder = nn.Sequential(  # keys decoder.0.{weight,bias} as the official; PyTorch's default init
            nn.Conv2d(encoder.num_features, self.encoder_stride**2 * 3, kernel_size=1),
            nn.PixelShuffle(self.encoder_stride),
        )

    def draw_mask(self, batch: int) -> torch.Tensor:
        """Per-sample random masks [B, h, w] bool (True = masked), from ``self.generator``."""
        return random_mask(batch, self.mask_grid, self.mask_ratio, self.generator)

    def forward_encoder(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W], mask [B, h, w] -> features z [B, L_out, C] of the whole image."""
        tokens = self.encoder.embed(images)  # [B, L0, C0], before the position embedding
        w = upsample_mask(mask, self.encoder.grid_size).flatten(1)[..., None].to(tokens.dtype)  # [B, L0, 1]
        tokens = tokens * (1 - w) + self.mask_token.to(tokens.dtype) * w
        return self.encoder.forward_tokens(tokens)

    def forward_decoder(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, L_out, C] -> reconstruction [B, 3, H, W] (1x1 conv, pixel shuffle by the final stride)."""
        h, w = self.encoder.out_grid_size
        return self.decoder(z.transpose(1, 2).reshape(z.shape[0], -1, h, w))

    def forward_loss(self, images: torch.Tensor, rec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L1 over masked pixels: images, rec [B, 3, H, W]; mask [B, h, w] at the mask-unit grid."""
        pixel_mask = upsample_mask(mask, tuple(images.shape[-2:]))[:, None].to(rec.dtype)  # [B, 1, H, W]
        l1 = F.l1_loss(rec, images, reduction="none")  # [B, 3, H, W]
        return (l1 * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / images.shape[1]

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W] (ImageNet-normalised); mask at the mask-unit grid (see ``baselines.masks``).

        Returns:
            ``loss``; ``pred`` [B, 3, H, W] the reconstruction; ``mask`` [B, h, w] float, 1 = masked.
        """
        b = images.shape[0]
        mask = self.draw_mask(b) if mask is None else batch_mask(mask, b, self.mask_grid)
        mask = to_device(mask, images.device)  # drawn on the host: a pinned asynchronous copy
        rec = self.forward_decoder(self.forward_encoder(images, mask))
        return {"loss": self.forward_loss(images, rec, mask), "pred": rec, "mask": mask.float()}

    def official_no_weight_decay(self) -> set[str]:
        """SimMIM ``optimizer.get_pretrain_param_groups`` with ``SimMIM.no_weight_decay()``: on the ViT
        ``{encoder.pos_embed, encoder.cls_token}`` (its ``mask_token`` and shared relative-position table are
        decayed); on the hierarchical backbone (Swin's lists) ``{encoder.absolute_pos_embed, encoder.mask_token}``
        (here: ``mask_token``), and the keyword ``encoder.relative_position_bias_table`` never matches a
        parameter name, so every table is decayed."""
        hierarchical = hasattr(self.encoder, "depths")
        names = {"mask_token", "encoder.absolute_pos_embed"} if hierarchical else {"encoder.cls_token",
                                                                                   "encoder.pos_embed"}
        return names & {n for n, _ in self.named_parameters()}

    def no_weight_decay(self) -> set[str]:
        """The encoder's list plus the [MASK] token (official ``SwinTransformerForSimMIM.no_weight_decay``)."""
        return super().no_weight_decay() | {"mask_token"}
