"""Fixed 2-D sin-cos position embeddings (MAE's layout) and resolution changes of learned tables.

The sin-cos embedding reproduces MAE's ``get_2d_sincos_pos_embed`` (used by the official MixMIM code)
value for value: the first half of the channels encodes the *column* coordinate, the second half the
row coordinate (MAE's ``np.meshgrid(grid_w, grid_h)`` order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[M] positions -> [M, dim]: ``sin`` in the first half, ``cos`` in the second (float64 math)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [D/2]
    out = positions.double().reshape(-1)[:, None] * omega[None, :]  # [M, D/2]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int | None = None) -> torch.Tensor:
    """The fixed 2-D embedding for a ``grid_h x grid_w`` token grid: [grid_h * grid_w, dim] (float32)."""
    grid_w = grid_h if grid_w is None else grid_w
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    rows = torch.arange(grid_h, dtype=torch.float64)
    cols = torch.arange(grid_w, dtype=torch.float64)
    # MAE: grid = meshgrid(grid_w, grid_h) -> grid[0] varies along columns and feeds the first half.
    col_coord, row_coord = torch.meshgrid(cols, rows, indexing="xy")  # [H, W] each
    emb_first = sincos_1d(dim // 2, col_coord)
    emb_second = sincos_1d(dim // 2, row_coord)
    return torch.cat([emb_first, emb_second], dim=1).float()


def resize_pos_embed(pos: torch.Tensor, new_hw: tuple[int, int], num_prefix: int = 0) -> torch.Tensor:
    """Bicubic resize of a learned/absolute embedding [1, prefix + H*W, C] to ``new_hw`` (square source)."""
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    size = int(round(grid.shape[1] ** 0.5))
    if size * size != grid.shape[1]:
        raise ValueError(f"position embedding with {grid.shape[1]} tokens is not a square grid")
    if (size, size) == tuple(new_hw):
        return pos
    grid = grid.reshape(1, size, size, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_hw, mode="bicubic", align_corners=False)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).flatten(1, 2).to(pos.dtype)], dim=1)


def resize_rel_pos_table(table: torch.Tensor, new_len: int) -> torch.Tensor:
    """Bicubic resize of a relative-position bias table [(2W-1)^2, heads] to ``new_len`` rows."""
    old_len, heads = table.shape
    if old_len == new_len:
        return table
    s1, s2 = int(round(old_len**0.5)), int(round(new_len**0.5))
    grid = table.permute(1, 0).reshape(1, heads, s1, s1).float()
    grid = F.interpolate(grid, size=(s2, s2), mode="bicubic", align_corners=False)
    return grid.reshape(heads, new_len).permute(1, 0).to(table.dtype)
