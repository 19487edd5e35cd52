"""ViTDet's backbone layout for the plain ViT (``coco.attention``), on the pre-trained blocks' own weights.

ViTDet (Li et al. 2022, detectron2 ``projects/ViTDet``, ``modeling/backbone/vit.py``) fine-tunes an MAE ViT for
detection with three changes, all applied here without touching the classification / pre-training path of
:class:`mixmim.backbones.vit.PlainViT` (its ``forward_tokens`` is unchanged; only the detection adapter calls
:func:`vitdet_features`):

- **windows**: 14x14 window attention (zero-padded to whole windows, as ViTDet) in every block except a few
  *global* blocks, evenly spaced and ending with the last block (ViT-B 2, 5, 8, 11; ViT-L 5, 11, 17, 23;
  ViT-H 7, 15, 23, 31: ViTDet's ``window_block_indexes`` complement);
- **decomposed relative positions** (MViTv2): per block ``rel_pos_h`` / ``rel_pos_w`` of shape
  ``[2 S - 1, head_dim]`` (``S`` the window, or the token grid at ``img_size`` for a global block), added to the
  attention logits as ``q . R_h + q . R_w``; zero-initialised, as ViTDet adds them to MAE weights
  (``rel_pos_zero_init=True``), and linearly resized when a block sees another size;
- **no cls token, no final norm**: patch tokens plus the absolute embedding (resized to the grid) go through
  the blocks; the simple feature pyramid normalises every level. ``cls_token`` and ``norm`` stay in the
  module (checkpoints load unchanged) but are frozen, being unused.

Layouts (``coco.attention``): ``window_global`` (default, ViTDet), ``window`` (no global block) and ``global``
(the pre-training ViT as is: global attention everywhere, cls token and final norm, no relative positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixmim.backbones.vit import PlainViT

VITDET_WINDOW = 14  # ViTDet's window_size for ViT-B/L/H at 1024 px
VITDET_GLOBAL_COUNT = 4  # ViTDet: 4 global blocks whatever the depth
REL_POS_KEYS = ("attn.rel_pos_h", "attn.rel_pos_w")  # new detection parameters (not in any MAE checkpoint)


def vitdet_global_blocks(depth: int, count: int = VITDET_GLOBAL_COUNT) -> tuple[int, ...]:
    """ViTDet's global blocks: ``count`` evenly spaced, the last one last (12 -> (2, 5, 8, 11))."""
    return tuple((i + 1) * depth // count - 1 for i in range(min(count, depth)))


def block_windows(depth: int, layout: str, window: int = VITDET_WINDOW) -> list[int]:
    """Window size of every block (0: global) for a detection ``layout`` other than ``global``."""
    if layout == "window":
        return [window] * depth
    if layout == "window_global":
        chosen = set(vitdet_global_blocks(depth))
        return [0 if i in chosen else window for i in range(depth)]
    raise ValueError(f"no ViTDet window layout for coco.attention={layout!r} (use window_global or window)")


def to_vitdet(vit: PlainViT, img_size: int, layout: str = "window_global", window: int = VITDET_WINDOW) -> None:
    """Turn ``vit`` (in place) into ViTDet's detection backbone: per-block windows and zero relative positions
    (``blocks.{i}.attn.rel_pos_{h,w}``); ``cls_token`` and the final ``norm`` are frozen (unused)."""
    grid = img_size // vit.patch_size
    vit.vitdet_windows = block_windows(len(vit.blocks), layout, window)
    for block, win in zip(vit.blocks, vit.vitdet_windows):
        size, head_dim = win or grid, block.attn.head_dim
        block.attn.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
        block.attn.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
    for param in (vit.cls_token, *vit.norm.parameters()):
        param.requires_grad_(False)


def is_vitdet(vit: nn.Module) -> bool:
    return getattr(vit, "vitdet_windows", None) is not None


def vitdet_features(vit: PlainViT, x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> the last block's map [B, D, H/p, W/p] in ViTDet's layout (see the module docstring)."""
    p = vit.patch_size
    b, h, w = x.shape[0], x.shape[2] // p, x.shape[3] // p
    tokens = vit.embed(x[:, :, : h * p, : w * p])  # [B, L, D]
    x = (tokens + vit._patch_pos((h, w), tokens.shape[1])).reshape(b, h, w, -1)
    for block, win in zip(vit.blocks, vit.vitdet_windows):
        x = _block(block, x, win)
    return x.permute(0, 3, 1, 2)


def _block(block: nn.Module, x: torch.Tensor, window: int) -> torch.Tensor:
    """timm's pre-norm ``Block`` on a map [B, H, W, D], attention inside ``window`` (0: the whole map)."""
    h, w = x.shape[1:3]
    y = block.norm1(x)
    if window:
        y, padded = _partition(y, window)
    y = _attention(block.attn, y)
    if window:
        y = _unpartition(y, window, padded, (h, w))
    x = x + block.drop_path1(block.ls1(y))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def _partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, H, W, C] -> zero-padded windows [B * nW, window, window, C] and the padded size (ViTDet)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def _unpartition(x: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // (hp * wp // window // window)
    x = x.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : size[0], : size[1]]


def _attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm ``Attention`` weights (``qkv``, ``proj``) with ViTDet's decomposed relative positions: [B, H, W, C]."""
    b, h, w, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, h * w, -1).unbind(0)  # [B * heads, L, d]
    bias = _rel_pos_bias(q, attn.rel_pos_h, attn.rel_pos_w, h, w)  # [B * heads, L, L]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=attn.scale)
    out = out.view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return attn.proj(out)


def _rel_pos(size: int, table: torch.Tensor) -> torch.Tensor:
    """ViTDet's ``get_rel_pos`` for equal query and key sizes: [size, size, d] (table resized linearly)."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None], size=length, mode="linear")[0].t()
    coords = torch.arange(size, device=table.device)
    return table[coords[:, None] - coords[None, :] + size - 1]


def _rel_pos_bias(q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """ViTDet's ``add_decomposed_rel_pos`` as an additive mask: ``q . R_h`` + ``q . R_w``, [B, L, L]."""
    r_q = q.reshape(q.shape[0], h, w, -1)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, _rel_pos(h, rel_h).to(q.dtype))  # [B, h, w, kh]
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, _rel_pos(w, rel_w).to(q.dtype))  # [B, h, w, kw]
    return (bias_h[..., :, None] + bias_w[..., None, :]).reshape(q.shape[0], h * w, h * w)
