"""Masks as pure functions of an explicit ``torch.Generator`` (so tests and resumes can pin them).

Conventions: a mask is 1 (or True) where a cell is masked (MixMIM: filled from the partner image).
Grids are (h, w) in mask units; :func:`upsample_mask` brings a mask to a token grid by nearest
interpolation, as the official code does for stages 1-3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.compiler.disable  # host work on the method's generator: never traced into a compiled step
def mix_mask(grid: tuple[int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """MixMIM's mask, shared by the batch: [h, w] float with exactly ``int(h * w * ratio)`` ones.

    Same recipe as the official ``random_masking``: uniform noise, argsort ascending, the first
    ``int(L * ratio)`` cells are masked.
    """
    length = grid[0] * grid[1]
    noise = torch.rand(length, generator=generator)
    mask = torch.zeros(length)
    mask[torch.argsort(noise)[: int(length * ratio)]] = 1.0
    return mask.reshape(grid)


@torch.compiler.disable  # host work on the method's generator: never traced into a compiled step
def random_mask(batch: int, grid: tuple[int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random masking (MAE, SimMIM): [B, h, w] bool with ``L - int(L * (1 - ratio))`` masked
    cells per sample (MAE keeps ``int(L * (1 - ratio))``; equal to SimMIM's ``ceil(L * ratio)``)."""
    length = grid[0] * grid[1]
    num_masked = length - int(length * (1 - ratio))
    noise = torch.rand(batch, length, generator=generator)
    ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)  # rank of each cell; small is keep
    return (ranks >= length - num_masked).reshape(batch, *grid)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive, like ``random.randint``)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _mask_one_block(mask: torch.Tensor, max_patches: int, min_patches: int, generator: torch.Generator,
                    log_aspect: tuple[float, float]) -> int:
    """One BEiT block attempt (up to 10 tries); returns how many new cells were masked."""
    height, width = mask.shape
    for _ in range(10):
        area = _uniform(generator, min_patches, max_patches)
        aspect = math.exp(_uniform(generator, *log_aspect))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w < width and 0 < h < height:
            top, left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
            region = mask[top : top + h, left : left + w]
            new = h * w - int(region.sum())
            if 0 < new <= max_patches:
                region.fill_(True)
                return new
    return 0


@torch.compiler.disable  # host work on the method's generator: never traced into a compiled step
def block_mask(grid: tuple[int, int], num_masked: int, generator: torch.Generator, min_block: int = 16,
               min_aspect: float = 0.3, exact: bool = False) -> torch.Tensor:
    """BEiT's blockwise masking (``MaskingGenerator``): rectangles of random area and aspect until
    about ``num_masked`` cells are masked: [h, w] bool.

    Args:
        min_block: smallest block area (BEiT: 16 at 14x14); clamped to ``num_masked`` on small grids.
        exact: top up with random unmasked cells so that exactly ``num_masked`` are masked (MixMIM's
            block-vs-random ablation needs the same count as random masking).
    """
    mask = torch.zeros(grid, dtype=torch.bool)
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    min_block = max(1, min(min_block, num_masked))
    count = 0
    while count < num_masked:
        new = _mask_one_block(mask, num_masked - count, min_block, generator, log_aspect)
        if new == 0:
            break
        count += new
    if exact and count < num_masked:
        free = torch.nonzero(~mask.flatten()).flatten()
        pick = free[torch.randperm(len(free), generator=generator)[: num_masked - count]]
        mask.view(-1)[pick] = True
    return mask


def gaussian_like(tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped, typed and placed like ``tokens``, a function of ``generator``'s state.

    Where ``generator`` lives (the CPU for every method): drawn from it, as always. On another device: one
    integer drawn from ``generator`` seeds a generator there, which draws the noise in place (no [B, L, C]
    host tensor, no copy, no synchronisation); reseeding and resuming ``generator`` still fix the noise.
    """
    if tokens.device == generator.device:
        return torch.randn(tokens.shape, generator=generator).to(tokens)
    seed = int(torch.randint(0, 2**62, (), generator=generator))  # a host draw: no device synchronisation
    device_generator = torch.Generator(device=tokens.device).manual_seed(seed)
    return torch.randn(tokens.shape, generator=device_generator, device=tokens.device, dtype=tokens.dtype)


def upsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of [..., h, w] to [..., H, W] (keeps the dtype)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    lead = mask.shape[:-2]
    up = F.interpolate(mask.reshape(-1, 1, *mask.shape[-2:]).float(), size=size, mode="nearest")
    return up.reshape(*lead, *size).to(mask.dtype)


def normalize_mask_arg(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Accept a given mask as [L], the official [1, L, 1], or [h, w]; return [h, w] float."""
    length = grid[0] * grid[1]
    if mask.numel() != length:
        raise ValueError(f"mask has {mask.numel()} cells; expected {length} ({grid[0]}x{grid[1]} mask units), "
                         "as [L], [1, L, 1] or [h, w]")
    return mask.reshape(grid).float()
