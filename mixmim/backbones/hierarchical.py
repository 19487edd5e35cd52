"""MixMIM's hierarchical vision transformer, layer for layer as the official ``models_mixmim*.py``.

Patch embedding (conv k=s=patch + LN) -> fixed sin-cos absolute position embedding -> stages of window
attention blocks (windows clamped to the stage resolution, no shifts, Swin relative-position bias) with
patch merging between stages -> final LN. State-dict keys equal the official checkpoints' keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from mixmim.backbones.attention import WindowAttention
from mixmim.backbones.groups import WindowGroupMask, upsample_groups, window_partition, window_reverse
from mixmim.backbones.interface import Backbone, check_global_pool
from mixmim.backbones.pos_embed import resize_pos_embed, sincos_2d
from mixmim.device_copy import to_device


class PatchMerging(nn.Module):
    """2x2 neighbour concatenation in the official (timm) order, LN(4C), Linear(4C, 2C, no bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C] (odd sizes are zero-padded, as Swin)."""
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        b, h, w, c = x.shape
        # The 2x2 neighbours (dh, dw) in the order (0,0), (1,0), (0,1), (1,1): dw-major, as the official cat of
        # x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]. One permute copy; the four strided slices
        # cost four zero-filled input-sized gradients in backward.
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class MixMIMBlock(nn.Module):
    """Pre-norm window-attention block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, drop_path: float = 0.0, attn_impl: str | None = None):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias=qkv_bias, impl=attn_impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor, mask: WindowGroupMask | None = None) -> torch.Tensor:
        """[B, H, W, C] -> [B, H, W, C]; ``mask`` is built for the window-padded grid."""
        h, w = x.shape[1:3]
        y = self.norm1(x)
        pad_h, pad_w = (-h) % self.window, (-w) % self.window
        if pad_h or pad_w:  # arbitrary input sizes (detection): pad to whole windows, as Swin does
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        windows = self.attn(window_partition(y, self.window), mask)  # [B, nW, N, C]
        y = window_reverse(windows, self.window, h + pad_h, w + pad_w)
        if pad_h or pad_w:  # only then: a slice's backward zero-fills an input-sized gradient
            y = y[:, :h, :w]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MixMIMStage(nn.Module):
    """``depth`` blocks at one resolution, then (optionally) patch merging. Keys: ``blocks``, ``downsample``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, drop_path: Sequence[float],
                 downsample: bool, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_impl: str | None = None, block_windows: Sequence[int] | None = None):
        super().__init__()
        self.window = window
        windows = list(block_windows) if block_windows is not None else [window] * depth  # per block
        self.blocks = nn.ModuleList(
            MixMIMBlock(dim, num_heads, windows[i], mlp_ratio, qkv_bias, drop, drop_path[i], attn_impl)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None
        self.grad_checkpointing = False

    def group_mask(self, groups: torch.Tensor | None, h: int, w: int, window: int | None = None,
                   device: torch.device | None = None) -> WindowGroupMask | None:
        """Window-partitioned mask of this stage (for blocks of ``window``, default the stage's) on ``device``
        (default: the map's) from a group map [G, Hg, Wg] on any device (the host: no synchronisation), or None:
        a mask only when the grid must be padded to whole windows."""
        window = window or self.window
        pad_h, pad_w = (-h) % window, (-w) % window
        if groups is None:
            if not (pad_h or pad_w):
                return None  # the fast path: no mask at all
            groups = torch.zeros(1, h, w, dtype=torch.long)  # one group (on the host): only padding excluded
        g = upsample_groups(groups, (h, w))
        if pad_h or pad_w:  # padded tokens are excluded from every group (masked out of attention)
            g = F.pad(g, (0, pad_w, 0, pad_h), value=-1)
        return WindowGroupMask.from_groups(g, window, device)

    def forward_blocks(self, x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """[B, H, W, C] through every block (one group mask per distinct block window; tokens added to fill whole
        windows are masked out of attention)."""
        masks = {}
        for block in self.blocks:
            if block.window not in masks:
                masks[block.window] = self.group_mask(groups, *x.shape[1:3], window=block.window, device=x.device)
            mask = masks[block.window]
            if self.grad_checkpointing and x.requires_grad:
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return x


def valid_token_groups(valid: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor | None:
    """Group map [B, H, W] of a stage: 0 on the tokens of each image (``ceil(valid / stride)``), -1 on padding;
    None when no image is padded at this stage (the unmasked fast path)."""
    tokens = torch.div(valid.to(torch.long) + stride - 1, stride, rounding_mode="floor")  # [B, 2] ceil
    h, w = size
    if bool((tokens[:, 0] >= h).all() and (tokens[:, 1] >= w).all()):
        return None
    rows = torch.arange(h, device=valid.device)[None, :, None] < tokens[:, 0, None, None]
    cols = torch.arange(w, device=valid.device)[None, None, :] < tokens[:, 1, None, None]
    return torch.where(rows & cols, 0, -1)


class MixMIMTransformer(Backbone):
    """The hierarchical encoder (official constructor argument names). ``num_classes=0``: no head.

    timm's contract: ``forward_features`` returns the normed final map [B, C, H/32, W/32];
    ``forward_intermediates`` returns every stage's map before its patch merging (as ``forward_pyramid``), at
    any input size; ``prune_intermediate_layers`` keeps the stages up to a tap.

    Windows are clamped to the stage resolution at ``img_size`` (official rule: a window as large as
    the stage becomes global attention), so MixMIM-B at 224 px has 14x14 windows in stages 1-2 and
    global attention in stages 3-4.

    ``global_blocks`` (flat block indexes over all stages, as ViTDet's ``window_block_indexes``; default
    none) makes those blocks attend over their whole stage at ``img_size``: their window is the stage
    resolution at ``img_size`` instead of ``window_size[i]``. Used by detection (``mixmim.transfer``) for
    ViTDet-style layouts: windows plus a few global blocks. Inputs larger than ``img_size`` are split into
    windows of that size.
    """

    official_frozen_params = ("absolute_pos_embed",)

    def __init__(self, img_size: int = 224, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 128, depths: Sequence[int] = (2, 2, 18, 2),
                 num_heads: Sequence[int] = (4, 8, 16, 32), window_size: Sequence[int] = (14, 14, 14, 7),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, attn_impl: str | None = None, use_checkpoint: bool = False,
                 qk_scale: float | None = None, patch_norm: bool = True, global_blocks: Sequence[int] = (),
                 global_pool: str = "avg"):
        super().__init__()
        if qk_scale is not None or not patch_norm:
            raise ValueError("qk_scale must be None and patch_norm True (the official models' only values)")
        n = len(depths)
        self.img_size, self.patch_size, self.num_classes = img_size, patch_size, num_classes
        self.in_chans, self.global_pool = in_chans, check_global_pool(global_pool)
        self.depths = tuple(depths)
        self.stage_dims = tuple(embed_dim * 2**i for i in range(n))
        self.strides = tuple(patch_size * 2**i for i in range(n))
        self.num_features = self.stage_dims[-1]
        self.num_layers = sum(depths)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, norm_layer=nn.LayerNorm,
                                      strict_img_size=False, dynamic_img_pad=True)
        self.grid_size = tuple(self.patch_embed.grid_size)
        # [1, L, C0], fixed: a persistent buffer (the official frozen Parameter's key; no gradient to expect)
        self.register_buffer("absolute_pos_embed", sincos_2d(embed_dim, *self.grid_size)[None])
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(self.num_layers - 1, 1) for i in range(self.num_layers)]  # linspace
        self.layers = nn.ModuleList()
        self.global_blocks = tuple(sorted(global_blocks))
        for i in range(n):
            resolution = min(self.grid_size[0] // 2**i, self.grid_size[1] // 2**i)
            window = min(window_size[i], resolution)
            whole = max(-(-self.grid_size[0] // 2**i), -(-self.grid_size[1] // 2**i))  # ceil: merging pads
            first = sum(depths[:i])
            block_windows = [whole if first + j in self.global_blocks else window for j in range(depths[i])]
            self.layers.append(MixMIMStage(
                self.stage_dims[i], depths[i], num_heads[i], window,
                dpr[sum(depths[:i]):sum(depths[: i + 1])], downsample=i < n - 1, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, drop=drop_rate, attn_impl=attn_impl, block_windows=block_windows))
        self.feature_info = [dict(num_chs=c, reduction=r, module=f"layers.{i}")
                             for i, (c, r) in enumerate(zip(self.stage_dims, self.strides))]
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        if num_classes > 0:
            trunc_normal_(self.head.weight, std=2e-5)  # the official fine-tuning re-initialises the head so
        self.set_grad_checkpointing(use_checkpoint)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)  # [B, L, C0]

    def forward_tokens(self, tokens, groups=None, group_embeds=None, keep=None, mask_attention=True,
                       return_prefix=False):
        """See :meth:`Backbone.forward_tokens` (no prefix tokens: ``return_prefix`` changes nothing)."""
        if keep is not None:
            raise ValueError("the hierarchical backbone cannot drop tokens; exclude them with a negative group id")
        b, length, c = tokens.shape
        h, w = self.grid_size
        if length != h * w:
            raise ValueError(f"expected {h * w} tokens ({h}x{w} at img_size={self.img_size}), got {length}")
        x = self.pos_drop(tokens + self.absolute_pos_embed).reshape(b, h, w, c)
        x = self._run_stages(x, groups, group_embeds, mask_attention)[-1]
        return self.norm(x.flatten(1, 2))  # [B, L_out, C_last]

    def _run_stages(self, x: torch.Tensor, groups=None, group_embeds=None, mask_attention=True, valid=None):
        """[B, H, W, C0] -> every stage's output [B, H_s, W_s, C_s] (before its patch merging).

        ``valid`` ([B, 2] image heights and widths in px, or None): tokens past them are padding, excluded
        from attention in every block and zeroed before every patch merging (:func:`valid_token_groups`)."""
        outs = []
        for i, stage in enumerate(self.layers):
            if group_embeds is not None:
                g = upsample_groups(groups, x.shape[1:3]).clamp(min=0)  # [G, H, W]
                x = x + group_embeds[i][to_device(g, x.device)].to(x.dtype)
            pad = valid_token_groups(valid, x.shape[1:3], self.strides[i]) if valid is not None else None
            x = stage.forward_blocks(x, pad if pad is not None else groups if mask_attention else None)
            if pad is not None:
                x = x.masked_fill(pad[..., None] < 0, 0.0)  # padding as zeros, as an unpadded image's merging pads
            outs.append(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return outs

    def forward_pyramid(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Every stage's map [B, C_s, H/s, W/s]; ``valid`` ([B, 2] px): each image's size inside a padded
        batch, its padding masked out (features equal the image's own, cropped)."""
        outs = self._run_stages(self._embed_map(x), valid=valid)
        return [o.permute(0, 3, 1, 2).contiguous() for o in outs]

    def _embed_map(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (any size) -> position-embedded tokens [B, H/p, W/p, C0]: the embedding of ``img_size``
        cropped to the grid when it fits (so padding leaves it unchanged), else resized."""
        tokens = self.patch_embed.proj(self._pad_to_patch(x)).permute(0, 2, 3, 1)  # [B, H, W, C0]
        tokens = self.patch_embed.norm(tokens)
        h, w = tokens.shape[1:3]
        if h <= self.grid_size[0] and w <= self.grid_size[1]:
            pos = self.absolute_pos_embed.reshape(1, *self.grid_size, -1)[:, :h, :w]
        else:
            pos = resize_pos_embed(self.absolute_pos_embed, (h, w)).reshape(1, h, w, -1)
        return self.pos_drop(tokens + pos)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's multi-scale API: the maps of the stages in ``indices`` (last n if an int, all if None), each
        before its patch merging, at any input size, and the final map as ``forward_features``.

        Args:
            norm: apply the final norm to the last stage's map (it is sized for that stage only).
            stop_early: skip the stages after the last tap.
            output_fmt: ``"NCHW"`` or ``"NHWC"`` for the taps (the final map is NCHW).

        Returns:
            ``(final [B, C, H, W], taps)``, or the taps alone with ``intermediates_only``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt={output_fmt!r}: the hierarchical backbone gives 'NCHW' or 'NHWC'")
        take, last = feature_take_indices(len(self.layers), indices)
        stages = self.layers[: last + 1] if stop_early else self.layers
        x, taps = self._embed_map(x), []
        for i, stage in enumerate(stages):
            x = stage.forward_blocks(x)  # [B, H_s, W_s, C_s]
            if i in take:
                y = self.norm(x) if norm and i == len(self.layers) - 1 else x
                taps.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
            if stage.downsample is not None and i < len(stages) - 1:
                x = stage.downsample(x)
        if intermediates_only:
            return taps
        if len(stages) == len(self.layers):
            x = self.norm(x)
        return x.permute(0, 3, 1, 2), taps

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last of ``indices`` (and that stage's patch merging), the final norm when
        it is pruned or no longer sized for the output, and the head (``reset_classifier(0, "")``).

        Returns:
            The absolute indices of the kept taps.
        """
        take, last = feature_take_indices(len(self.layers), indices)
        if prune_norm or last < len(self.layers) - 1:
            self.norm = nn.Identity()
        if last < len(self.layers) - 1:
            self.layers = self.layers[: last + 1]
            self.layers[-1].downsample = None
            kept = last + 1
            self.depths, self.stage_dims, self.strides = self.depths[:kept], self.stage_dims[:kept], self.strides[:kept]
            self.num_features, self.num_layers = self.stage_dims[-1], sum(self.depths)
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def _pad_to_patch(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = (-x.shape[2]) % self.patch_size, (-x.shape[3]) % self.patch_size
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def layer_id(self, name: str) -> int:
        """The official ``get_layer_id_for_mixmim``: embeddings 0, block j of stage i at
        ``sum(depths[:i]) + j + 1``, stage i's downsample at ``sum(depths[:i+1]) + 1``, everything else
        (final norm, head) at ``num_layers`` (the official quirk: lr scale ``decay**1``, not 1)."""
        if name in ("absolute_pos_embed", "cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("layers."):
            parts = name.split(".")
            stage = int(parts[1])
            if parts[2] == "downsample":
                return sum(self.depths[: stage + 1]) + 1
            return sum(self.depths[:stage]) + int(parts[3]) + 1
        return self.num_layers

    def no_weight_decay(self) -> set[str]:
        return set()  # the official fine-tune model lists nothing (the fixed embedding is a buffer)

    def no_weight_decay_keywords(self) -> set[str]:
        return {"relative_position_bias_table"}  # decayed by the official code (quirk), as timm's Swin would not
