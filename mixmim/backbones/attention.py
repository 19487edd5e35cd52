"""Window self-attention with a Swin relative-position bias and an optional token-group mask.

Three implementations of the same function, switchable per module (``impl``) or globally
(:func:`set_attention_impl`):

- ``"grouped"`` (default): sorts each window's tokens by group (``groups.SegmentPlan``) and runs a dense
  attention inside every (window, group) segment, which skips every masked score (about half of them with
  two groups); the bias is gathered per segment. Where sorting would not pay (no groups, or segments too
  uneven) it runs the dense scores with the mask folded into the bias. Scores are explicit on the CPU
  (``F.scaled_dot_product_attention`` would take its slower math path there: the bias needs a gradient) and
  go through ``F.scaled_dot_product_attention`` on CUDA (memory-efficient kernel, bias gradient supported).
- ``"sdpa"``: ``F.scaled_dot_product_attention`` with the bias and the group mask folded into one additive
  mask (``-inf`` where a key is not allowed).
- ``"official"``: the official MixMIM formulation on explicit scores, ``attn -= 1e30 * (1 - allowed)``
  then softmax. Kept as the reference for equivalence tests and for the benchmark's ratio.

A query with no allowed key (possible only with excluded tokens, ``groups.py``) outputs zeros in all three.

``"bound"`` is not attention: it runs the ``qkv`` and ``proj`` projections and passes ``v`` through (no
scores, no softmax), the cost floor under every implementation. The benchmark times it (``mixmim-bench bench
--bound``) to show how much any attention implementation could still gain; it is refused everywhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from mixmim.backbones.groups import SegmentBucket, SegmentPlan, WindowGroupMask

ATTENTION_IMPLS = ("grouped", "sdpa", "official")
BOUND_IMPL = "bound"  # the benchmark's cost floor (module docstring); never an attention implementation
_default_impl = "grouped"
MASKED = -1e30  # the official additive penalty: exp() of it is exactly 0 next to any allowed score


def set_attention_impl(impl: str, *, allow_bound: bool = False) -> None:
    """Select the default attention implementation for modules built with ``impl=None``.

    ``allow_bound``: also accept :data:`BOUND_IMPL` (the benchmark's cost floor, which is not attention).
    """
    global _default_impl
    if impl == BOUND_IMPL and not allow_bound:
        raise ValueError(f"'{BOUND_IMPL}' is the benchmark's cost floor, not attention (its output ignores q and "
                         f"k); train and evaluate with one of {ATTENTION_IMPLS}")
    if impl not in ATTENTION_IMPLS and impl != BOUND_IMPL:
        raise ValueError(f"unknown attention impl '{impl}'; choose one of {ATTENTION_IMPLS}")
    _default_impl = impl


def get_attention_impl() -> str:
    """The default attention implementation (what modules built with ``impl=None`` use)."""
    return _default_impl


@contextlib.contextmanager
def attention_impl(impl: str, *, allow_bound: bool = False) -> Iterator[None]:
    """Change the default attention implementation inside the ``with`` block, and restore it after (tests,
    the benchmark's variants: one way to change the global, never restored by hand)."""
    previous = get_attention_impl()
    set_attention_impl(impl, allow_bound=allow_bound)
    try:
        yield
    finally:
        set_attention_impl(previous)


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
        impl = self.impl or _default_impl
        if impl == BOUND_IMPL:
            return self._bound(x)
        if impl == "grouped":
            # Under torch.compile the dense path: the sort is host-side and its shapes change every step.
            sortable = mask is not None and not torch.compiler.is_compiling()
            plan = mask.segment_plan() if sortable else None
            return self._grouped(x, plan) if plan is not None else self._dense(x, mask)
        b, nw, n, c = x.shape
        qkv = self.qkv(x).reshape(b, nw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # [B, nW, heads, N, d] each
        bias = self.relative_bias().to(q.dtype)  # [heads, N, N]
        attend = self._official if impl == "official" else self._sdpa
        out = attend(q, k, v, bias, mask)  # [B, nW, heads, N, d]
        if mask is not None and mask.empty_rows is not None:
            out = out.masked_fill(mask.empty_rows, 0.0)
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)

    def _bound(self, x: torch.Tensor) -> torch.Tensor:
        """The cost floor: x [B, nW, N, C] -> proj(v) [B, nW, N, C] (q and k computed, then unused)."""
        v = self.qkv(x).chunk(3, dim=-1)[2]
        return self.proj(v)

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

    def _dense(self, x: torch.Tensor, mask: WindowGroupMask | None) -> torch.Tensor:
        """Dense window attention with the mask folded into the bias (``grouped`` where sorting does not pay).

        ``bias - 1e30 * (1 - allowed)`` is added to the scores: the allowed scores are the official
        formulation's sums in the same order, the others become exactly 0 after the softmax (in fp16 the
        penalty is -inf, harmless since every row keeps an allowed key).
        """
        b, nw, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.reshape(3, b, nw * h, n, c // h).unbind(0)  # [B, nW * heads, N, d] each (4-D for SDPA)
        bias = self.relative_bias().to(q.dtype)  # [heads, N, N]
        if mask is not None:
            allowed = mask.allowed
            if mask.empty_rows is not None:  # keep such rows finite (fp16); their output is zeroed below
                allowed = allowed | mask.empty_rows
            bias = bias.masked_fill(~allowed, MASKED)  # [G, nW, heads, N, N]
        bias = bias.expand(bias.shape[0] if bias.dim() == 5 else 1, nw, h, n, n).reshape(-1, nw * h, n, n)
        out = _attention(q, k, v, bias, self.scale).reshape(b, nw, h, n, c // h)
        if mask is not None and mask.empty_rows is not None:
            out = out.masked_fill(mask.empty_rows, 0.0)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))

    def _grouped(self, x: torch.Tensor, plan: SegmentPlan) -> torch.Tensor:
        """Dense attention inside every (window, group) segment of ``plan``: x [B, nW, N, C] -> [B, nW, N, C].

        A per-sample plan (group map per sample, ``plan.windows = B * nW``) folds the batch into the windows.
        """
        b, nw, n, c = x.shape
        per_sample = plan.windows == b * nw and plan.windows != nw
        tokens = x.reshape(1, b * nw * n, c) if per_sample else x.reshape(b, nw * n, c)
        slots = torch.cat([bucket.tokens for bucket in plan.buckets])
        qkv = self.qkv(tokens.index_select(1, slots))  # [B', T, 3C]: sorted (and padded) tokens only
        # split, not slices: a slice's backward writes a zero tensor of the whole qkv per bucket
        chunks = qkv.split([bucket.num_segments * bucket.length for bucket in plan.buckets], dim=1)
        outs = [self._bucket_attention(chunk, bucket, self._bucket_bias(plan, i))
                for i, (chunk, bucket) in enumerate(zip(chunks, plan.buckets))]
        outs.append(qkv.new_zeros(qkv.shape[0], 1, c))  # what excluded tokens read: a zero attention output
        out = torch.cat(outs, dim=1).index_select(1, plan.inverse)  # back to window order
        return self.proj(out.reshape(b, nw, n, c))

    def _bucket_bias(self, plan: SegmentPlan, index: int) -> torch.Tensor:
        """[1, heads * S, L, L] relative-position bias of a bucket's segments, MASKED at padded keys."""
        bucket = plan.buckets[index]
        key = ("bias_index", self.window, index)
        table = self.relative_position_bias_table
        if key not in plan.cache:  # shared by every block of the stage (same window, same plan)
            plan.cache[key] = segment_bias_index(self.relative_position_index, bucket, len(table))
        table = torch.cat([table, table.new_full((1, self.num_heads), MASKED)])  # row -1: padded keys
        bias = table.t().index_select(1, plan.cache[key])  # [heads, S * L * L]
        return bias.reshape(1, self.num_heads * bucket.num_segments, bucket.length, bucket.length)

    def _bucket_attention(self, qkv: torch.Tensor, bucket: SegmentBucket, bias: torch.Tensor) -> torch.Tensor:
        """qkv [B', S * L, 3C] of one bucket -> attention output [B', S * L, C] (segments attend to themselves)."""
        bs, heads, s, length = qkv.shape[0], self.num_heads, bucket.num_segments, bucket.length
        c = qkv.shape[-1] // 3
        qkv = qkv.reshape(bs, s, length, 3, heads, c // heads).permute(3, 0, 4, 1, 2, 5)  # [3, B', h, S, L, d]
        q, k, v = qkv.reshape(3, bs, heads * s, length, c // heads).unbind(0)  # [B', h * S, L, d] each
        out = _attention(q, k, v, bias.to(q.dtype), self.scale)
        return out.reshape(bs, heads, s, length, c // heads).permute(0, 2, 3, 1, 4).reshape(bs, s * length, c)


def segment_bias_index(relative_index: torch.Tensor, bucket: SegmentBucket, masked_row: int) -> torch.Tensor:
    """[S * L * L] rows of the bias table for a bucket: the relative index of every (query, key) pair,
    ``masked_row`` (the MASKED row appended to the table) for padded keys; a padded query's other entries are
    finite (its output is dropped)."""
    pos = bucket.positions  # [S, L], -1 at padded slots
    clamped = pos.clamp(min=0)
    index = relative_index[clamped[:, :, None], clamped[:, None, :]]  # [S, L, L]
    index = index.masked_fill((pos < 0)[:, None, :], masked_row)
    return index.reshape(-1)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * q k^T + bias) v for q, k, v [..., L, d] and bias broadcasting to [..., L, L].

    CUDA: ``F.scaled_dot_product_attention`` (a fused kernel that also returns the bias gradient). CPU: the
    explicit scores, which is faster there than SDPA's math fallback (taken whenever the bias needs a
    gradient; it adds a NaN-guard pass over the scores).
    """
    needs_bias_grad = torch.is_grad_enabled() and bias.requires_grad
    if q.is_cuda or (q.dim() == 4 and not needs_bias_grad):  # CPU inference: the flash kernel takes the bias
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    attn = (q * scale) @ k.transpose(-2, -1)  # as the official: scale q, then the product
    # Out of place: an in-place add of the broadcast bf16 bias ran at half the speed (68 vs 34 ms per five
    # stage-3 MixMIM-B calls, batch 8, 2 CPU cores); fp32 is the same either way once the heap is kept.
    return (attn + bias).softmax(dim=-1) @ v
