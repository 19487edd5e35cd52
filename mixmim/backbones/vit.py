"""A plain ViT in MAE's layout (``facebookresearch/mae``, ``models_mae.py`` encoder), on timm's blocks.

cls token, fixed 2-D sin-cos position embedding (cls position zero), pre-norm blocks (LN eps 1e-6, qkv
bias), final LN. Keys: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head`` — official MAE checkpoints load unchanged.

Our protocol (identical for both backbones, for fair comparisons): ``forward_tokens`` returns the
normed *patch* tokens; the head averages them. MAE's fine-tuning instead pools before an extra
``fc_norm`` and trains ``pos_embed``; we keep the embedding fixed (``docs/methods.md``).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from mixmim.backbones.groups import upsample_groups
from mixmim.backbones.interface import Backbone
from mixmim.backbones.pos_embed import resize_pos_embed, sincos_2d


class PlainViT(Backbone):
    """ViT with MAE's constructor names (``embed_dim``, ``depth``, ``num_heads``). ``num_classes=0``: no head."""

    supports_token_drop = True
    num_prefix_tokens = 1

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0, **_ignored):
        super().__init__()
        self.img_size, self.patch_size, self.num_classes = img_size, patch_size, num_classes
        self.stage_dims, self.strides = (embed_dim,), (patch_size,)
        self.num_features, self.num_layers = embed_dim, depth
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = torch.cat([torch.zeros(1, embed_dim), sincos_2d(embed_dim, *self.grid_size)])
        self.pos_embed = nn.Parameter(pos[None], requires_grad=False)  # [1, 1 + L, D], fixed
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth linspace
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm)
            for i in range(depth)
        )
        self.norm = norm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: xavier on the flattened patch projection and every Linear."""
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.num_classes > 0:
            trunc_normal_(self.head.weight, std=2e-5)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)  # [B, L, D]

    def forward_tokens(self, tokens, groups=None, group_embeds=None, keep=None, mask_attention=True, grid=None,
                       return_prefix=False):
        """See :meth:`Backbone.forward_tokens`; ``grid`` (H, W) is needed only off the default size."""
        b, length, d = tokens.shape
        x = tokens + self._patch_pos(grid or self.grid_size, length)  # [B, L, D]
        attn_mask = None
        if groups is not None:
            if keep is not None:
                raise ValueError("pass either groups or keep, not both")
            g = upsample_groups(groups, self.grid_size).flatten(1)  # [G, L]
            if (g < 0).any():
                raise ValueError("the plain ViT takes non-negative groups; drop tokens with keep= instead")
            if group_embeds is not None:
                x = x + group_embeds[0][g].to(x.dtype)
            g = torch.cat([g.new_zeros(g.shape[0], 1), g], dim=1)  # the cls token joins group 0
            if mask_attention:
                attn_mask = (g[:, :, None] == g[:, None, :])[:, None]  # [G, 1, 1+L, 1+L]
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, d))  # [B, L_keep, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        x = self.norm(x)  # [B, 1 + L_out, D]
        return x if return_prefix else x[:, 1:]  # patch tokens only unless the cls token is asked for

    def _patch_pos(self, grid: tuple[int, int], length: int) -> torch.Tensor:
        """[1, L, D] patch position embedding for a token grid (bicubic resize off the default size)."""
        if grid[0] * grid[1] != length:
            raise ValueError(f"{length} tokens do not form the grid {grid}; pass grid=(H, W)")
        if tuple(grid) == self.grid_size:
            return self.pos_embed[:, 1:]
        return resize_pos_embed(self.pos_embed, tuple(grid), num_prefix=1)[:, 1:]

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The single stride-``patch_size`` map [B, D, H/p, W/p] (ViTDet builds its pyramid from it)."""
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        out = self.forward_tokens(self.embed(x[:, :, : h * self.patch_size, : w * self.patch_size]), grid=(h, w))
        return [out.transpose(1, 2).reshape(x.shape[0], -1, h, w)]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = features.mean(dim=1)
        return pooled if pre_logits else self.head(pooled)

    def layer_id(self, name: str) -> int:
        """MAE's ``get_layer_id_for_vit``: embeddings 0, block i at i + 1, the rest (norm, head) at
        ``num_layers + 1`` (lr scale 1.0)."""
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}
