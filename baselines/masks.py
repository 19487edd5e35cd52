"""Mask plumbing shared by the baselines: the mask-unit grid of a backbone and given masks as [B, h, w].

Conventions as :mod:`mixmim.pretrain.masking`: True (or 1) marks a *masked* cell; masks live on the mask-unit grid
``(img_size / mask_unit,) * 2`` and are brought to a token grid with :func:`mixmim.pretrain.masking.upsample_mask`.
The baselines draw one mask per sample (MAE, SimMIM and BEiT all do); a mask passed to ``forward`` may be
shared by the batch ([h, w] or [L]) or per sample ([B, h, w] or [B, L], e.g. MAE's official [N, L] mask).
"""

from __future__ import annotations

import torch

from mixmim.backbones.interface import Backbone
from mixmim.pretrain.masking import block_mask

BEIT_REFERENCE_CELLS = 14 * 14  # BEiT's blockwise masking is specified on the 14x14 grid of ViT-B/16 at 224 px
BEIT_MIN_BLOCK = 16  # BEiT's --min_mask_patches_per_block at that grid


def mask_unit_grid(encoder: Backbone, mask_unit: int, multiple_of: int) -> tuple[int, int]:
    """The (h, w) mask-unit grid, checking that ``mask_unit`` px is a multiple of ``multiple_of`` px (the
    stride the method needs: the final stride when features must not mix masked and visible pixels, the
    patch size when masking happens at the patch embedding) and that it divides ``img_size``."""
    if mask_unit <= 0 or mask_unit % multiple_of or encoder.img_size % mask_unit:
        raise ValueError(f"mask_unit {mask_unit} px must be a positive multiple of {multiple_of} px and divide "
                         f"img_size ({encoder.img_size} px); set method.mask_unit accordingly")
    side = encoder.img_size // mask_unit
    if side < 2:
        raise ValueError(f"mask_unit {mask_unit} px leaves a {side}x{side} mask grid at {encoder.img_size} px; "
                         "choose a smaller method.mask_unit (for example 8 px at 32 px)")
    return (side, side)


def batch_mask(mask: torch.Tensor, batch: int, grid: tuple[int, int]) -> torch.Tensor:
    """A given mask as [B, h, w] bool: accepts [h, w] or [L] (shared by the batch), [B, h, w] or [B, L]."""
    length = grid[0] * grid[1]
    if mask.numel() == length:
        return mask.reshape(1, *grid).bool().expand(batch, -1, -1)
    if mask.numel() == batch * length:
        return mask.reshape(batch, *grid).bool()
    raise ValueError(f"mask has shape {tuple(mask.shape)}; expected [{grid[0]}, {grid[1]}], [{length}], "
                     f"[{batch}, {grid[0]}, {grid[1]}] or [{batch}, {length}] ({grid[0]}x{grid[1]} mask units)")


def random_count_masks(batch: int, grid: tuple[int, int], count: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample uniform masks with exactly ``count`` masked cells: [B, h, w] bool."""
    noise = torch.rand(batch, grid[0] * grid[1], generator=generator)
    ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)  # rank of each cell's noise
    return (ranks < count).reshape(batch, *grid)


def beit_block_masks(batch: int, grid: tuple[int, int], num_masked: int,
                     generator: torch.Generator) -> torch.Tensor:
    """BEiT's blockwise masking, one mask per sample: [B, h, w] bool with about ``num_masked`` cells each.

    The smallest block (16 patches of 196 in BEiT) scales with the grid, so that blocks cover the same
    fraction of the image on the coarser grids of the hierarchical backbone.
    """
    cells = grid[0] * grid[1]
    min_block = max(1, round(BEIT_MIN_BLOCK * cells / BEIT_REFERENCE_CELLS))
    return torch.stack([block_mask(grid, num_masked, generator, min_block=min_block) for _ in range(batch)])
