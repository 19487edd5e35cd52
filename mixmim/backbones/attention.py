"""Window self-attention with a Swin relative-position bias and an optional token-group mask.

Two implementations of the same function, switchable per module (``impl``) or globally
(:func:`set_attention_impl`):

- ``"sdpa"`` (default): ``F.scaled_dot_product_attention`` with the bias and the group mask folded into
  one additive mask (``-inf`` where a key is not allowed).
- ``"official"``: the official MixMIM formulation on explicit scores, ``attn -= 1e30 * (1 - allowed)``
  then softmax. Kept as the reference for equivalence tests and for the benchmark's ratio.

A query with no allowed key (possible only with excluded tokens, ``groups.py``) outputs zeros in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from mixmim.backbones.groups import WindowGroupMask

ATTENTION_IMPLS = ("sdpa", "official")
_default_impl = "sdpa"


def set_attention_impl(impl: str) -> None:
    """Select the default attention implementation for modules built with ``impl=None``."""
    global _default_impl
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"unknown attention impl '{impl}'; choose one of {ATTENTION_IMPLS}")
    _default_impl = impl


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's [N, N] index into the (2W-1)^2 bias table for a ``window x window`` window (N = W*W)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)  # [2, N]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [N, N, 2]
    rel = rel + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head attention inside windows, with a learned relative-position bias per head.

    State-dict keys as the official: ``qkv``, ``proj``, ``relative_position_bias_table``,
    ``relative_position_index`` (a persistent buffer).
    """

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True, impl: str | None = None):
        super().__init__()
        self.dim, self.window, self.num_heads = dim, window, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.impl = impl
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_bias(self) -> torch.Tensor:
        """[heads, N, N] bias for one window."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: WindowGroupMask | None = None) -> torch.Tensor:
        """x: [B, nW, N, C] windows -> [B, nW, N, C]. ``mask`` broadcasts over the batch (G = 1 or B)."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).reshape(b, nw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # [B, nW, heads, N, d] each
        bias = self.relative_bias().to(q.dtype)  # [heads, N, N]
        attend = self._official if (self.impl or _default_impl) == "official" else self._sdpa
        out = attend(q, k, v, bias, mask)  # [B, nW, heads, N, d]
        if mask is not None and mask.empty_rows is not None:
            out = out.masked_fill(mask.empty_rows, 0.0)
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)

    def _sdpa(self, q, k, v, bias: torch.Tensor, mask: WindowGroupMask | None) -> torch.Tensor:
        attn_mask = bias
        if mask is not None:
            allowed = mask.allowed
            if mask.empty_rows is not None:  # an all--inf row would give NaN; its output is zeroed later
                allowed = allowed | mask.empty_rows
            attn_mask = bias.masked_fill(~allowed, float("-inf"))  # [G, nW, heads, N, N]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)

    def _official(self, q, k, v, bias: torch.Tensor, mask: WindowGroupMask | None) -> torch.Tensor:
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:
            penalty = 65500.0 if attn.dtype == torch.float16 else 1e30  # as the official code
            attn = attn - penalty * (~mask.allowed).to(attn.dtype)
        return attn.softmax(dim=-1) @ v
