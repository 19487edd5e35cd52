"""Token groups: which tokens may attend to which (MixMIM's masked self-attention, generalised).

A *group map* is an integer tensor ``[G, Hg, Wg]`` (``G`` is 1 when the whole batch shares it, as in
MixMIM, or ``B``). Token ``i`` may attend to token ``j`` only if both have the same group id. A negative
id marks an *excluded* token: no token attends to it, and as a query it has no allowed key (its
attention output is defined to be zero, never NaN). MixMIM uses ids {0, 1} (which image a token came
from); MAE on the hierarchical backbone uses {0: visible, -1: masked}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
        allowed: [G, nW, 1, N, N] bool, True where query i may attend to key j (G = 1 or B).
        empty_rows: [G, nW, 1, N, 1] bool where a query has no allowed key, or None if there are none.
    """

    allowed: torch.Tensor
    empty_rows: torch.Tensor | None

    @classmethod
    def from_groups(cls, groups: torch.Tensor, window: int) -> WindowGroupMask:
        """Build from a group map at the stage resolution [G, H, W]."""
        g = window_partition(groups[..., None], window)[..., 0]  # [G, nW, N]
        allowed = (g[..., :, None] == g[..., None, :]) & (g[..., None, :] >= 0)  # [G, nW, N, N]
        has_any = allowed.any(-1, keepdim=True)  # [G, nW, N, 1]
        # One host sync per stage (not per block) to know whether zeroing is needed at all.
        empty = None if bool(has_any.all()) else (~has_any)[:, :, None]
        return cls(allowed=allowed[:, :, None], empty_rows=empty)
