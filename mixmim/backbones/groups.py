"""Token groups: which tokens may attend to which (MixMIM's masked self-attention, generalised).

A *group map* is an integer tensor ``[G, Hg, Wg]`` (``G`` is 1 when the whole batch shares it, as in
MixMIM, or ``B``). Token ``i`` may attend to token ``j`` only if both have the same group id. A negative
id marks an *excluded* token: no token attends to it, and as a query it has no allowed key (its
attention output is defined to be zero, never NaN). MixMIM uses ids {0, 1} (which image a token came
from); MAE on the hierarchical backbone uses {0: visible, -1: masked}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mixmim.device_copy import to_device

MAX_BUCKETS = 4  # few buckets keep the op count low (each bucket is one batched attention call)
MAX_PLAN_COST = 0.85  # use the sorted path only if it needs at most this fraction of the dense scores


def upsample_groups(groups: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of a group map [G, Hg, Wg] to [G, H, W] (exact when H % Hg == 0)."""
    if tuple(groups.shape[-2:]) == tuple(size):
        return groups
    h, w = size
    hg, wg = groups.shape[-2:]
    if h % hg or w % wg:
        raise ValueError(
            f"group map {hg}x{wg} does not divide the token grid {h}x{w}: the mask unit must be a "
            "multiple of the stage stride (choose mask_unit so that img_size / mask_unit divides every stage grid)"
        )
    up = F.interpolate(groups[:, None].float(), size=size, mode="nearest")
    return up[:, 0].to(groups.dtype)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, ...] -> [B, nW, window*window, ...] (row-major windows, row-major tokens inside)."""
    b, h, w = x.shape[:3]
    rest = x.shape[3:]
    x = x.reshape(b, h // window, window, w // window, window, *rest)
    x = x.transpose(2, 3)  # [B, H/w, W/w, w, w, ...]
    return x.reshape(b, (h // window) * (w // window), window * window, *rest)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """[B, nW, window*window, C] -> [B, H, W, C] (inverse of :func:`window_partition`)."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, h // window, w // window, window, window, c)
    return x.transpose(2, 3).reshape(b, h, w, c)


@dataclass
class WindowGroupMask:
    """The attention mask of one stage, window-partitioned like the tokens.

    Attributes:
        allowed: [G, nW, 1, N, N] bool, True where query i may attend to key j (G = 1 or B), on the device the
            attention runs on.
        empty_rows: [G, nW, 1, N, 1] bool where a query has no allowed key, or None if there are none (on the
            device of ``allowed``).
        groups: [G, nW, N] the group id of every token, window-partitioned, where the group map was given (the
            host, for the methods: the segment plan is made there), or None when built by hand.
    """

    allowed: torch.Tensor
    empty_rows: torch.Tensor | None
    groups: torch.Tensor | None = None
    _plan: dict = field(default_factory=dict, repr=False, compare=False)

    def segment_plan(self, max_buckets: int = MAX_BUCKETS, max_cost: float = MAX_PLAN_COST) -> SegmentPlan | None:
        """The token sort of the ``grouped`` attention (cached: one per stage, shared by its blocks).

        None when there is no group map or sorting would not cut the attention work below ``max_cost`` of
        the dense masked attention (then the dense path is the faster one).
        """
        key = (max_buckets, max_cost)
        if key not in self._plan:
            plan = (None if self.groups is None
                    else plan_segments(self.groups.flatten(0, 1), max_buckets, self.allowed.device))
            self._plan[key] = plan if plan is not None and plan.cost <= max_cost else None
        return self._plan[key]

    @classmethod
    def from_groups(cls, groups: torch.Tensor, window: int, device: torch.device | None = None) -> WindowGroupMask:
        """Build from a group map at the stage resolution [G, H, W] for attention on ``device`` (default: the
        map's). A map on the host (as the methods pass it) costs no synchronisation: the plan is made from it
        and only the masks are copied (:func:`~mixmim.device_copy.to_device`); a map on the GPU costs one host
        read per stage (not per block), to know whether any query must be zeroed."""
        device = groups.device if device is None else torch.device(device)
        g = window_partition(groups[..., None], window)[..., 0]  # [G, nW, N], where the map is
        on_device = to_device(g, device)
        allowed = (on_device[..., :, None] == on_device[..., None, :]) & (on_device[..., None, :] >= 0)
        # A token attends to itself unless it is excluded, so the queries without an allowed key are exactly
        # the excluded tokens (negative ids).
        excluded = g < 0  # [G, nW, N]
        if torch.compiler.is_compiling():  # no data-dependent branch in a graph; an all-False mask changes nothing
            return cls(allowed=allowed[:, :, None], empty_rows=to_device(excluded[:, :, None, :, None], device))
        empty = to_device(excluded[:, :, None, :, None], device) if bool(excluded.any()) else None
        return cls(allowed=allowed[:, :, None], empty_rows=empty, groups=g)


# --- Sorting tokens by group: the masked attention as dense attention on disjoint segments -----------------
#
# Token i attends to token j only if both are in the same window and the same group, so the masked attention
# of a window is exactly a dense attention inside each (window, group) *segment* of its tokens. Gathering the
# segments' tokens and running one dense attention per segment skips every masked score: with two groups of
# equal size in a window, half the attention FLOPs and memory. Segments have different lengths; they are
# packed into a few *buckets* of one padded length each (padded keys are masked, padded queries dropped).


@dataclass(frozen=True)
class SegmentBucket:
    """``num_segments`` segments padded to ``length`` tokens.

    Attributes:
        tokens: [S * L] long, index of every slot into the flattened token axis (windows x tokens); a padded
            slot repeats its segment's first token (same group, so nothing leaks through it).
        positions: [S, L] long, each slot's position inside its window, -1 for padded slots.
    """

    num_segments: int
    length: int
    tokens: torch.Tensor
    positions: torch.Tensor


@dataclass(frozen=True)
class SegmentPlan:
    """How to sort the tokens of ``windows`` windows of ``window_tokens`` tokens into buckets.

    Attributes:
        buckets: ascending by length; their slots concatenated form the sorted token sequence.
        inverse: [windows * window_tokens] long, each token's slot in the concatenated buckets, or the total
            slot count (one past the end: a zero row) for excluded tokens.
        cost: padded attention scores / dense scores (windows x N x N), the work relative to the dense path.
    """

    windows: int
    window_tokens: int
    buckets: tuple[SegmentBucket, ...]
    inverse: torch.Tensor
    cost: float
    cache: dict = field(default_factory=dict, repr=False, compare=False, hash=False)


def bucket_lengths(lengths: np.ndarray, max_buckets: int) -> list[int]:
    """Padded lengths (ascending) of at most ``max_buckets`` buckets that minimise sum(S_b * L_b^2).

    Dynamic programming over the distinct segment lengths; fewer buckets are taken when they cost at most
    5% more (each bucket is one more attention call).
    """
    values, counts = np.unique(lengths, return_counts=True)
    d = len(values)
    before = np.concatenate([[0], np.cumsum(counts)])  # segments shorter than values[i]: before[i]
    square = values.astype(np.float64) ** 2
    best = np.full((max_buckets + 1, d + 1), np.inf)  # best[k, j]: values[:j] in k buckets
    choice = np.zeros((max_buckets + 1, d + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, max_buckets + 1):
        for j in range(1, d + 1):  # the last bucket covers values[i:j], padded to values[j - 1]
            costs = best[k - 1, :j] + (before[j] - before[:j]) * square[j - 1]
            choice[k, j] = int(np.argmin(costs))
            best[k, j] = costs[choice[k, j]]
    totals = best[1:, d]
    k = int(np.flatnonzero(totals <= totals.min() * 1.05)[0]) + 1
    ends, j = [], d
    while j > 0:
        ends.append(int(values[j - 1]))
        j, k = int(choice[k, j]), k - 1
    return ends[::-1]


def plan_segments(window_groups: torch.Tensor, max_buckets: int = MAX_BUCKETS,
                  device: torch.device | None = None) -> SegmentPlan | None:
    """Sort the tokens of every window by group: window_groups [nW, N] (negative: excluded) -> plan whose
    index tensors are on ``device`` (default: the map's).

    Planned on the host (NumPy): a map on the GPU is read back once (a synchronisation), a host map is not;
    the plan's indexes reach ``device`` as pinned asynchronous copies. Returns None when no token belongs to a
    group. Segments keep their tokens in window order.
    """
    g = window_groups.detach().cpu().numpy().astype(np.int64)
    nw, n = g.shape
    kept = np.flatnonzero(g.ravel() >= 0)  # flat token indices of grouped tokens
    if kept.size == 0:
        return None
    segment_key = (kept // n) * (g.max() + 1) + g.ravel()[kept]  # (window, group) -> one id
    order = np.argsort(segment_key, kind="stable")
    sorted_tokens = kept[order]
    _, starts, lengths = np.unique(segment_key[order], return_index=True, return_counts=True)
    inverse = np.full(nw * n, -1, dtype=np.int64)
    buckets, offset, low = [], 0, 0
    for length in bucket_lengths(lengths, max_buckets):
        members = np.flatnonzero((lengths > low) & (lengths <= length))
        low = length
        slot = np.arange(length)
        real = slot[None, :] < lengths[members, None]  # [S, L]
        source = starts[members, None] + np.where(real, slot[None, :], 0)  # pads: the segment's first token
        tokens = sorted_tokens[source]  # [S, L]
        inverse[tokens[real]] = offset + np.flatnonzero(real.ravel())
        offset += tokens.size
        buckets.append(SegmentBucket(len(members), length, torch.from_numpy(tokens.ravel()),
                                     torch.from_numpy(np.where(real, tokens % n, -1))))
    inverse[inverse < 0] = offset  # excluded tokens read the zero row after the last slot
    cost = sum(b.num_segments * b.length**2 for b in buckets) / (nw * n * n)
    device = window_groups.device if device is None else device
    buckets = tuple(SegmentBucket(b.num_segments, b.length, to_device(b.tokens, device),
                                  to_device(b.positions, device)) for b in buckets)
    return SegmentPlan(nw, n, buckets, to_device(torch.from_numpy(inverse), device), cost)
