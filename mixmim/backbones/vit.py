"""A plain ViT in MAE's layout (``facebookresearch/mae``, ``models_mae.py`` encoder), on timm's blocks.

cls token, fixed 2-D sin-cos position embedding (cls position zero), pre-norm blocks (LN eps 1e-6, qkv
bias), final LN. Keys: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.{norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``head`` — official MAE checkpoints load unchanged.

Our protocol (identical for both backbones, for fair comparisons): ``forward_tokens`` returns the
normed *patch* tokens; the head averages them. MAE's fine-tuning instead pools before an extra
``fc_norm`` and trains ``pos_embed`` (the switches ``fc_norm`` and ``trainable_pos_embed``; ``docs/methods.md``).

The baselines' own encoder options are switches (defaults: the shared ViT above, unchanged):
``init_values`` (layer scale, ``blocks.{i}.ls{1,2}.gamma``; SimMIM/BEiT 0.1), ``use_abs_pos_emb=False`` (no
absolute position embedding), ``rel_pos_bias`` (``"shared"``: one BEiT relative position bias for every block,
as SimMIM/BEiT pre-train; ``"layer"``: one per block, as they fine-tune), ``global_pool`` (``"avg"`` or
``"token"``: the cls token), ``fc_norm`` (pool first, then a LayerNorm: MAE's and BEiT's fine-tuning) and
``trainable_pos_embed`` (the sin-cos embedding as a Parameter, layer 0, no weight decay: MAE's fine-tuning).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from timm.layers import PatchEmbed, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import Block
from torch import nn

from mixmim.backbones.groups import upsample_groups
from mixmim.backbones.interface import Backbone, check_global_pool
from mixmim.backbones.pos_embed import resize_pos_embed, sincos_2d
from mixmim.backbones.rel_pos_bias import RelativePositionBias
from mixmim.config import CHOICES
from mixmim.device_copy import to_device

REL_POS_BIAS = CHOICES["model.rel_pos_bias"]  # declared once, on the config
GLOBAL_POOL = CHOICES["model.global_pool"]  # reset_classifier also takes "" (timm)


class PlainViT(Backbone):
    """ViT with MAE's constructor names (``embed_dim``, ``depth``, ``num_heads``). ``num_classes=0``: no head.

    timm's contract: ``forward_features`` returns the normed patch tokens as a map [B, D, H/p, W/p] (the cls
    token is not pooled by our protocol); ``forward_intermediates`` taps blocks, as timm's ViT.
    """

    supports_token_drop = True
    num_prefix_tokens = 1
    global_pools = ("avg", "token", "")
    official_frozen_params = ("pos_embed",)

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0, init_values: float | None = None, use_abs_pos_emb: bool = True,
                 rel_pos_bias: str = "none", global_pool: str = "avg", fc_norm: bool = False,
                 trainable_pos_embed: bool = False):
        super().__init__()
        if rel_pos_bias not in REL_POS_BIAS:
            raise ValueError(f"rel_pos_bias must be one of {REL_POS_BIAS}, got {rel_pos_bias!r}")
        self.rel_pos_bias_mode = rel_pos_bias
        self.img_size, self.patch_size, self.num_classes = img_size, patch_size, num_classes
        self.in_chans, self.global_pool = in_chans, check_global_pool(global_pool, self.global_pools)
        self.stage_dims, self.strides = (embed_dim,), (patch_size,)
        self.num_features, self.num_layers = embed_dim, depth
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = torch.cat([torch.zeros(1, embed_dim), sincos_2d(embed_dim, *self.grid_size)])
        # [1, 1 + L, D], fixed: a persistent buffer under MAE's key (None without an absolute embedding);
        # trainable_pos_embed: a Parameter with the same key and start, as MAE's fine-tuning model trains it
        self.trainable_pos_embed = trainable_pos_embed and use_abs_pos_emb
        if self.trainable_pos_embed:
            self.pos_embed = nn.Parameter(pos[None])
            self.official_frozen_params = ()
        else:
            self.register_buffer("pos_embed", pos[None] if use_abs_pos_emb else None)
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
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
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
            g = to_device(g, x.device)  # a host map (as the methods pass it) was checked without a synchronisation
            if group_embeds is not None:
                x = x + group_embeds[0][g].to(x.dtype)
            g = torch.cat([g.new_zeros(g.shape[0], 1), g], dim=1)  # the cls token joins group 0
            if mask_attention:
                attn_mask = (g[:, :, None] == g[:, None, :])[:, None]  # [G, 1, 1+L, 1+L]
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, d))  # [B, L_keep, D]
        x = torch.cat([self._prefix(b), x], dim=1)
        for block, mask in zip(self.blocks, self._block_masks(grid, attn_mask, keep, x.dtype)):
            x = block(x, attn_mask=mask)
        x = self.norm(x)  # [B, 1 + L_out, D]
        return x if return_prefix else x[:, 1:]  # patch tokens only unless the cls token is asked for

    def _prefix(self, batch: int) -> torch.Tensor:
        """The cls token with its (zero) position embedding: [B, 1, D]."""
        cls = self.cls_token if self.pos_embed is None else self.cls_token + self.pos_embed[:, :1]
        return cls.expand(batch, -1, -1)

    def _block_masks(self, grid, attn_mask: torch.Tensor | None, keep: torch.Tensor | None,
                     dtype: torch.dtype) -> list[torch.Tensor | None]:
        """The attention mask of every block: the group mask alone, or with the relative position bias
        (shared or per block) folded in as an additive bias."""
        if self.rel_pos_bias is None:
            return [attn_mask] * len(self.blocks)
        if tuple(grid or self.grid_size) != self.grid_size:
            raise ValueError(f"the relative position bias is built for the {self.grid_size} grid, got {grid}; "
                             "build the ViT at this image size (load_official_checkpoint resizes the tables)")
        if isinstance(self.rel_pos_bias, nn.ModuleList):
            return [self._attn_bias(rpb(), attn_mask, keep, dtype) for rpb in self.rel_pos_bias]
        return [self._attn_bias(self.rel_pos_bias(), attn_mask, keep, dtype)] * len(self.blocks)

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

    def forward_token_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> final tokens [B, L, D] ([B, 1 + L, D], cls first, when ``global_pool="token"``)."""
        return self.forward_tokens(self.embed(x), return_prefix=self.global_pool == "token")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's map [B, D, H/p, W/p]; with ``global_pool="token"`` timm's ViT layout [B, 1 + L, D]."""
        if self.global_pool == "token":
            return self.forward_token_features(x)
        return super().forward_features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """As :meth:`Backbone.forward_head`, plus the cls token (``global_pool="token"``) and ``fc_norm``."""
        if self.global_pool == "" or (self.global_pool == "avg" and self.fc_norm is None):
            return super().forward_head(features, pre_logits)
        if self.global_pool == "token":
            pooled = features[:, 0]  # the cls token of [B, 1 + L, D]
        else:
            pooled = (features.flatten(2).transpose(1, 2) if features.ndim == 4 else features).mean(dim=1)
        if self.fc_norm is not None:
            pooled = self.fc_norm(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's API: the patch tokens after the blocks in ``indices`` (last n if an int, all if None) as maps
        [B, D, H/p, W/p] (``output_fmt="NLC"``: [B, L, D]), and the final map as ``forward_features``.

        Args:
            norm: apply the final norm to every tap.
            stop_early: skip the blocks after the last tap.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt={output_fmt!r}: the plain ViT gives 'NCHW' or 'NLC'")
        take, last = feature_take_indices(len(self.blocks), indices)
        b, h, w = x.shape[0], x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        tokens = self.embed(x[:, :, : h * self.patch_size, : w * self.patch_size])  # [B, L, D]
        x = tokens + self._patch_pos((h, w), tokens.shape[1])
        x = torch.cat([self._prefix(b), x], dim=1)
        masks = self._block_masks((h, w), None, None, x.dtype)
        taps = []
        for i, block in enumerate(self.blocks[: last + 1] if stop_early else self.blocks):
            x = block(x, attn_mask=masks[i])
            if i in take:
                y = (self.norm(x) if norm else x)[:, 1:]  # patch tokens [B, L, D]
                taps.append(y.transpose(1, 2).reshape(b, -1, h, w) if output_fmt == "NCHW" else y)
        if intermediates_only:
            return taps
        return self.norm(x)[:, 1:].transpose(1, 2).unflatten(2, (h, w)), taps

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks after the last of ``indices``, the final norm (``prune_norm``) and the head
        (``reset_classifier(0, "")``). Returns the absolute indices of the kept taps."""
        take, last = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: last + 1]
        self.num_layers = len(self.blocks)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def layer_id(self, name: str) -> int:
        """MAE's ``get_layer_id_for_vit``: embeddings 0, block i at i + 1, the rest (norm, head) at
        ``num_layers + 1`` (lr scale 1.0)."""
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks.") or (name.startswith("rel_pos_bias.") and self.rel_pos_bias_mode == "layer"):
            return int(name.split(".")[1]) + 1  # a per-block bias sits in its block (BEiT: blocks.{i}.attn)
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        """``cls_token``, and ``pos_embed`` when it is trained (MAE's list); the fixed one is a buffer."""
        return {"cls_token", "pos_embed"} if self.trainable_pos_embed else {"cls_token"}

    def no_weight_decay_keywords(self) -> set[str]:
        return {"relative_position_bias_table"} if self.rel_pos_bias is not None else set()
