"""The light pixel decoder of MixMIM and MAE: Linear -> [+ mask tokens] -> fixed sin-cos -> ViT blocks.

Attribute names are the official ones (``decoder_embed``, ``mask_token``, ``decoder_pos_embed``,
``decoder_blocks``, ``decoder_norm``, ``decoder_pred``), so a method holding it as ``decoder`` maps to the
official flat keys by dropping the ``decoder.`` prefix.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from mixmim.backbones.pos_embed import sincos_2d


class PixelDecoder(nn.Module):
    """Decoder over a ``grid`` of tokens (plus ``num_prefix`` leading tokens, e.g. MAE's cls).

    Args:
        in_dim: encoder output channels.
        grid: (h, w) token grid the decoder sees.
        out_dim: values predicted per token (``patch * patch * 3``).
        norm_eps: LayerNorm eps (MixMIM: 1e-5, nn.LayerNorm's default; MAE: 1e-6).
        mask_token_init: ``trunc_normal`` (MixMIM) or ``normal`` (MAE), both std 0.02.
    """

    def __init__(self, in_dim: int, grid: tuple[int, int], out_dim: int, dim: int = 512, depth: int = 8,
                 num_heads: int = 16, num_prefix: int = 0, norm_eps: float = 1e-5,
                 mask_token_init: str = "trunc_normal"):
        super().__init__()
        self.grid, self.num_prefix = tuple(grid), num_prefix
        self.decoder_embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_2d(dim, *grid)
        if num_prefix:
            pos = torch.cat([torch.zeros(num_prefix, dim), pos])
        self.decoder_pos_embed = nn.Parameter(pos[None], requires_grad=False)  # [1, prefix + L, D]
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.decoder_blocks = nn.ModuleList(Block(dim, num_heads, 4.0, qkv_bias=True, norm_layer=norm)
                                            for _ in range(depth))
        self.decoder_norm = norm(dim)
        self.decoder_pred = nn.Linear(dim, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if mask_token_init == "normal":
            nn.init.normal_(self.mask_token, std=0.02)
        else:
            trunc_normal_(self.mask_token, std=0.02)

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder features [B, L, C] -> decoder tokens [B, L, D]."""
        return self.decoder_embed(z)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder tokens [B, prefix + L, D] (mask tokens already in place) -> [B, prefix + L, out_dim]."""
        x = x + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))
