"""A plain ViT in MAE's layout (``facebookresearch/mae``, ``models_mae.py`` encoder), on timm's blocks.

cls token, fixed 2-D sin-cos position embedding (cls position zero), pre-norm blocks (LN eps 1e-6, qkv
bias), final LN. Keys: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head`` — official MAE checkpoints load unchanged.

Our protocol (identical for both backbones, for fair comparisons): ``forward_tokens`` returns the
normed *patch* tokens; the head averages them. MAE's fine-tuning instead pools before an extra
``fc_norm`` and trains ``pos_embed``; we keep the embedding fixed (``docs/methods.md``).

The baselines' own encoder options are switches (defaults: the shared ViT above, unchanged):
``init_values`` (layer scale, ``blocks.{i}.ls{1,2}.gamma``; SimMIM/BEiT 0.1), ``use_abs_pos_emb=False`` (no
absolute position embedding), ``rel_pos_bias`` (``"shared"``: one BEiT relative position bias for every block,
as SimMIM/BEiT pre-train; ``"layer"``: one per block, as they fine-tune), ``global_pool`` (``"avg"`` or
``"token"``: the cls token) and ``fc_norm`` (pool first, then a LayerNorm: MAE's and BEiT's fine-tuning).
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
from mixmim.backbones.rel_pos_bias import RelativePositionBias

REL_POS_BIAS = ("none", "shared", "layer")
GLOBAL_POOL = ("avg", "token")


class PlainViT(Backbone):
    """ViT with MAE's constructor names (``embed_dim``, ``depth``, ``num_heads``). ``num_classes=0``: no head."""

    supports_token_drop = True
    num_prefix_tokens = 1

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0, init_values: float | None = None, use_abs_pos_emb: bool = True,
                 rel_pos_bias: str = "none", global_pool: str = "avg", fc_norm: bool = False, **_ignored):
        super().__init__()
        if rel_pos_bias not in REL_POS_BIAS:
            raise ValueError(f"rel_pos_bias must be one of {REL_POS_BIAS}, got {rel_pos_bias!r}")
        if global_pool not in GLOBAL_POOL:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOL}, got {global_pool!r}")
        self.global_pool, self.rel_pos_bias_mode = global_pool, rel_pos_bias
        self.img_size, self.patch_size, self.num_classes = img_size, patch_size, num_classes
        self.stage_dims, self.strides = (embed_dim,), (patch_size,)
        self.num_features, self.num_layers = embed_dim, depth
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = torch.cat([torch.zeros(1, embed_dim), sincos_2d(embed_dim, *self.grid_size)])
        self.pos_embed = nn.Parameter(pos[None], requires_grad=False) if use_abs_pos_emb else None  # [1, 1+L, D]
        self.rel_pos_bias = None
        if rel_pos_bias == "shared":
            self.rel_pos_bias = RelativePositionBias(self.grid_size, num_heads)
        elif rel_pos_bias == "layer":
            self.rel_pos_bias = nn.ModuleList(RelativePositionBias(self.grid_size, num_heads) for _ in range(depth))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth linspace
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm,
                  init_values=init_values)
            for i in range(depth)
        )
        self.norm = nn.Identity() if fc_norm else norm(embed_dim)
        self.fc_norm = norm(embed_dim) if fc_norm else None
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
        if self.rel_pos_bias is not None and tuple(grid or self.grid_size) != self.grid_size:
            raise ValueError(f"the relative position bias is built for the {self.grid_size} grid, got {grid}; "
                             "build the ViT at this image size (load_official_checkpoint resizes the tables)")
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
        cls = self.cls_token if self.pos_embed is None else self.cls_token + self.pos_embed[:, :1]
        x = torch.cat([cls.expand(b, -1, -1), x], dim=1)
        if self.rel_pos_bias is None:
            for block in self.blocks:
                x = block(x, attn_mask=attn_mask)
        else:
            shared = None if isinstance(self.rel_pos_bias, nn.ModuleList) else self.rel_pos_bias()
            for i, block in enumerate(self.blocks):
                bias = shared if shared is not None else self.rel_pos_bias[i]()
                x = block(x, attn_mask=self._attn_bias(bias, attn_mask, keep, x.dtype))
        x = self.norm(x)  # [B, 1 + L_out, D]
        return x if return_prefix else x[:, 1:]  # patch tokens only unless the cls token is asked for

    @staticmethod
    def _attn_bias(bias: torch.Tensor, attn_mask: torch.Tensor | None, keep: torch.Tensor | None,
                   dtype: torch.dtype) -> torch.Tensor:
        """The relative position bias [heads, 1+L, 1+L] as an additive mask: rows and columns of the kept
        tokens (cls first), ``-inf`` where the group mask forbids a key."""
        bias = bias[None].to(dtype)  # [1, heads, N, N]
        if keep is not None:
            idx = torch.cat([keep.new_zeros(keep.shape[0], 1), keep + 1], dim=1)  # [B, 1 + L_keep]
            rows = torch.arange(bias.shape[1], device=idx.device)
            bias = bias[0][rows[None, :, None, None], idx[:, None, :, None], idx[:, None, None, :]]
        if attn_mask is not None:
            bias = torch.where(attn_mask, bias, float("-inf"))  # [G, heads, N, N]
        return bias

    def _patch_pos(self, grid: tuple[int, int], length: int) -> torch.Tensor | float:
        """[1, L, D] patch position embedding for a token grid (bicubic resize off the default size)."""
        if grid[0] * grid[1] != length:
            raise ValueError(f"{length} tokens do not form the grid {grid}; pass grid=(H, W)")
        if self.pos_embed is None:
            return 0.0
        if tuple(grid) == self.grid_size:
            return self.pos_embed[:, 1:]
        return resize_pos_embed(self.pos_embed, tuple(grid), num_prefix=1)[:, 1:]

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The single stride-``patch_size`` map [B, D, H/p, W/p] (ViTDet builds its pyramid from it)."""
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        out = self.forward_tokens(self.embed(x[:, :, : h * self.patch_size, : w * self.patch_size]), grid=(h, w))
        return [out.transpose(1, 2).reshape(x.shape[0], -1, h, w)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> final tokens [B, L, C] (with the cls token first when ``global_pool="token"``)."""
        return self.forward_tokens(self.embed(x), return_prefix=self.global_pool == "token")

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = features[:, 0] if self.global_pool == "token" else features.mean(dim=1)
        if self.fc_norm is not None:
            pooled = self.fc_norm(pooled)
        return pooled if pre_logits else self.head(pooled)

    def layer_id(self, name: str) -> int:
        """MAE's ``get_layer_id_for_vit``: embeddings 0, block i at i + 1, the rest (norm, head) at
        ``num_layers + 1`` (lr scale 1.0)."""
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks.") or (name.startswith("rel_pos_bias.") and self.rel_pos_bias_mode == "layer"):
            return int(name.split(".")[1]) + 1  # a per-block bias sits in its block (BEiT: blocks.{i}.attn)
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def no_weight_decay_keywords(self) -> set[str]:
        return {"relative_position_bias_table"} if self.rel_pos_bias is not None else set()
