"""BEiT's relative position bias for a plain ViT with a cls token (SimMIM's and BEiT's published ViTs).

One ``(2H-1)(2W-1) + 3`` x heads table: the patch-to-patch offsets plus three entries for cls-to-token,
token-to-cls and cls-to-cls; a ``[1 + HW, 1 + HW]`` index into it. Layout, index and zero init as
microsoft/unilm ``beit/modeling_finetune.py`` ``RelativePositionBias`` (copied by microsoft/SimMIM
``models/vision_transformer.py``), so the official ``rel_pos_bias.*`` and per-block
``attn.relative_position_bias_table`` tensors load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from mixmim.backbones.pos_embed import resize_rel_pos_table

NUM_CLS_ENTRIES = 3  # cls-to-token, token-to-cls, cls-to-cls


def cls_relative_position_index(grid: tuple[int, int]) -> torch.Tensor:
    """The official ``[1 + H*W, 1 + H*W]`` index (row 0 = the cls token as the query)."""
    h, w = grid
    num = (2 * h - 1) * (2 * w - 1) + NUM_CLS_ENTRIES
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)  # [2, HW]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [HW, HW, 2]
    index = torch.zeros(h * w + 1, h * w + 1, dtype=torch.long)
    index[1:, 1:] = (rel[..., 0] + h - 1) * (2 * w - 1) + rel[..., 1] + w - 1
    index[0, 0:] = num - 3
    index[0:, 0] = num - 2
    index[0, 0] = num - 1
    return index


class RelativePositionBias(nn.Module):
    """``forward() -> [heads, 1 + HW, 1 + HW]``, the additive attention bias (shared or one per block)."""

    def __init__(self, grid: tuple[int, int], num_heads: int):
        super().__init__()
        self.grid = tuple(grid)
        num = (2 * grid[0] - 1) * (2 * grid[1] - 1) + NUM_CLS_ENTRIES
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num, num_heads))  # official: zeros
        self.register_buffer("relative_position_index", cls_relative_position_index(self.grid))

    def forward(self) -> torch.Tensor:
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1)  # [heads, N, N]


def is_cls_rel_pos_table(length: int) -> bool:
    """Whether a table of ``length`` rows is this layout (odd square side plus the three cls entries)."""
    side = round((length - NUM_CLS_ENTRIES) ** 0.5)
    return side % 2 == 1 and side * side + NUM_CLS_ENTRIES == length


def resize_cls_rel_pos_table(table: torch.Tensor, new_len: int) -> torch.Tensor:
    """Bicubic resize of the patch-offset part (as Swin's tables); the three cls entries are kept."""
    spatial, extra = table[:-NUM_CLS_ENTRIES], table[-NUM_CLS_ENTRIES:]
    return torch.cat([resize_rel_pos_table(spatial, new_len - NUM_CLS_ENTRIES), extra])
