"""MAE (He et al., arXiv 2111.06377; official facebookresearch/mae ``models_mae.py``) on the shared backbones.

Steps, each a method below, as the official model: :meth:`MAE.draw_mask` (per-sample random masking, 75%)
-> :meth:`MAE.forward_encoder` (the encoder sees the visible patches only) -> :meth:`MAE.forward_decoder`
([MASK] tokens enter here; fixed sin-cos decoder position embedding; 8 blocks x 512 x 16 heads)
-> :meth:`MAE.forward_loss` (MSE on per-patch normalised pixels, masked patches only).
"""

from __future__ import annotations

import torch

from baselines.masks import batch_mask, mask_unit_grid
from mixmim.backbones.interface import Backbone
from mixmim.device_copy import to_device
from mixmim.pretrain.decoder import PixelDecoder
from mixmim.pretrain.masking import random_mask, upsample_mask
from mixmim.pretrain.method import PretrainMethod
from mixmim.pretrain.targets import pixel_targets


def visible_first_order(token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's ``ids_keep`` and ``ids_restore`` from a token mask [B, L] (True = masked).

    The official code shuffles with random noise ("small is keep, large is remove"); we sort by the mask
    (stable): visible tokens first in raster order, then the masked ones. ``ids_restore`` undoes the order
    exactly as in the official decoder. Raises if samples differ in their number of visible tokens.
    """
    visible = (~token_mask).sum(dim=1)  # [B]
    if bool((visible != visible[0]).any()):
        raise ValueError("token dropping needs the same number of visible tokens in every sample; "
                         f"got {visible.tolist()}")
    ids_shuffle = torch.argsort(token_mask.to(torch.uint8), dim=1, stable=True)  # [B, L]: visible first
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [B, L]
    return ids_shuffle[:, : int(visible[0])], ids_restore


class MAE(PretrainMethod):
    """Masked autoencoder on either backbone.

    **Plain ViT** (``encoder.supports_token_drop``): exactly the official model. The masked patches are
    dropped after the position embedding (``forward_tokens(keep=...)``); the cls token goes through the
    encoder and the decoder (``return_prefix=True``; ``decoder_pos_embed`` has its zero cls slot); the
    [MASK] token is initialised ``normal(std=.02)``; decoder LayerNorms use eps 1e-6. State-dict keys are
    the official ones under ``encoder.``/``decoder.`` (``mixmim.weights.checkpoint.load_official_checkpoint``).

    **Hierarchical backbone** (our definition): tokens cannot be dropped there, since windows and patch
    merging need the full grid. MAE runs as *visible tokens attend only to visible tokens*: the masked
    mask units get group id -1 (``forward_tokens(groups=...)``), so they are excluded as keys in every
    block of every stage, and the [MASK] token enters only at the decoder, as in MAE. With a mask unit
    that is a multiple of the final stride (the default: the final stride itself, 32 px at 224), patch
    merging never mixes a masked and a visible cell, so the visible features are exactly independent of
    the masked pixels -- the property token dropping gives on the ViT. What is not reproduced is MAE's
    compute saving (the masked tokens are still computed, then discarded).

    Args:
        encoder: a backbone with ``num_classes=0``.
        mask_ratio: fraction of mask units removed per sample (``L - int(L * (1 - ratio))`` of them).
        mask_unit: px per mask unit; 0 = the encoder's final stride (the ViT's patch).
        norm_pix_loss: per-patch normalised targets (the official recipe's flag).
        decoder_dim, decoder_depth, decoder_heads: MAE's light decoder (512, 8, 16).
    """

    lr_scale_base = 256  # MAE: lr = blr * effective_batch / 256

    def __init__(self, encoder: Backbone, mask_ratio: float = 0.75, mask_unit: int = 0,
                 norm_pix_loss: bool = True, decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_heads: int = 16):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.mask_unit = mask_unit or encoder.strides[-1]
        self.mask_grid = mask_unit_grid(encoder, self.mask_unit, multiple_of=encoder.strides[-1])
        self.drop_tokens = bool(encoder.supports_token_drop)
        self.token_grid = encoder.out_grid_size  # what the decoder sees (the ViT's patch grid)
        if self.drop_tokens and tuple(encoder.grid_size) != tuple(self.token_grid):
            raise ValueError("token dropping needs a single-stage backbone (embedding grid = output grid)")
        self.target_patch = encoder.strides[-1]
        self.num_prefix = encoder.num_prefix_tokens
        self.decoder = PixelDecoder(encoder.num_features, self.token_grid, self.target_patch**2 * 3,
                                    decoder_dim, decoder_depth, decoder_heads, num_prefix=self.num_prefix,
                                    norm_eps=1e-6, mask_token_init="normal")

    def draw_mask(self, batch: int) -> torch.Tensor:
        """Per-sample random masks [B, h, w] bool (True = removed), from ``self.generator``."""
        return random_mask(batch, self.mask_grid, self.mask_ratio, self.generator)

    def forward_encoder(self, images: torch.Tensor, mask: torch.Tensor,
                        ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 3, H, W], mask [B, h, w] -> latent [B, prefix + L_vis, C] (ViT) or [B, L, C] (hierarchical).

        ``ids_keep`` [B, L_vis] (ViT only) are the visible tokens, from :func:`visible_first_order`.
        """
        tokens = self.encoder.embed(images)  # [B, L0, C0], before the position embedding
        if self.drop_tokens:
            if ids_keep is None:
                ids_keep, _ = visible_first_order(upsample_mask(mask, self.encoder.grid_size).flatten(1))
            return self.encoder.forward_tokens(tokens, keep=ids_keep, return_prefix=True)
        groups = torch.where(mask, -1, 0).long()  # [B, h, w]: 0 visible, -1 masked (never a key)
        return self.encoder.forward_tokens(tokens, groups=groups, return_prefix=True)

    def forward_decoder(self, latent: torch.Tensor, token_mask: torch.Tensor,
                        ids_restore: torch.Tensor | None = None) -> torch.Tensor:
        """latent (see :meth:`forward_encoder`), token_mask [B, L] -> pred [B, L, p*p*3] (prefix removed)."""
        x = self.decoder.embed(latent)  # [B, prefix + *, D]
        prefix, x = x[:, : self.num_prefix], x[:, self.num_prefix :]
        token = self.decoder.mask_token.to(x.dtype)
        if self.drop_tokens:  # append [MASK] tokens, then unshuffle (the official order of operations)
            if ids_restore is None:
                _, ids_restore = visible_first_order(token_mask)
            b, length, d = x.shape[0], token_mask.shape[1], x.shape[2]
            x = torch.cat([x, token.expand(b, length - x.shape[1], d)], dim=1)  # [B, L, D]
            x = torch.gather(x, 1, ids_restore[..., None].expand(-1, -1, d))
        else:  # discard the masked positions' features: the [MASK] token takes their place
            x = torch.where(token_mask[..., None], token, x)  # [B, L, D]
        return self.decoder.predict(torch.cat([prefix, x], dim=1))[:, self.num_prefix :]

    def forward_loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over removed patches of the per-patch MSE: images [B, 3, H, W], pred [B, L, P], mask [B, L]."""
        target = pixel_targets(images, self.target_patch, self.norm_pix_loss)  # [B, L, P]
        per_patch = ((pred - target) ** 2).mean(dim=-1)  # [B, L]
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W] (ImageNet-normalised); mask at the mask-unit grid (see ``baselines.masks``).

        Returns:
            ``loss``; ``pred`` [B, L, p*p*3] at the decoder's token grid; ``mask`` [B, L] float, 1 = removed
            (the official model's three outputs).
        """
        b = images.shape[0]
        mask = self.draw_mask(b) if mask is None else batch_mask(mask, b, self.mask_grid)
        # Index bookkeeping on the CPU (where masks are drawn): no device synchronisation, meta-friendly.
        token_mask = upsample_mask(mask.cpu(), self.token_grid).flatten(1)  # [B, L] bool
        ids_keep, ids_restore = visible_first_order(token_mask) if self.drop_tokens else (None, None)
        device = images.device  # the host mask groups the hierarchical backbone's tokens (planned on the host)
        latent = self.forward_encoder(images, mask.cpu(), None if ids_keep is None else to_device(ids_keep, device))
        token_mask = to_device(token_mask, device)
        pred = self.forward_decoder(latent, token_mask, None if ids_restore is None else to_device(ids_restore, device))
        m = token_mask.to(pred.dtype)
        return {"loss": self.forward_loss(images, pred, m), "pred": pred, "mask": m}
