"""Attention layout of the hierarchical backbone at detection resolution (``coco.attention``).

MixMIM pre-trains at 224 px, where the window size equals the stage resolution in the last two stages
(14x14 and 7x7 tokens): they attend globally. At 1024 px those stages hold 64x64 and 32x32 tokens, so a
layout must be chosen. Three are offered, as flat block indexes for the backbone's ``global_blocks``:

- ``window_global`` (default, ViTDet's recipe transposed): every block keeps its pre-training window (14 in
  stages 1-3, 7 in stage 4) except a few *global* blocks: in the second-to-last stage one block in six,
  evenly spaced and ending with the stage's last block (MixMIM-B/L: blocks 5, 11, 17 of stage 3, as ViTDet-L
  puts its global blocks at 5, 11, 17, 23); in the last stage every block (it was global in pre-training and is
  cheap: 32x32 tokens at 1024 px).
- ``global``: every block of the last two stages is global.
- ``window``: pre-training windows everywhere, no global block (no cross-window exchange in stages 3-4).

Plain ViTs read the same names (``vitdet.py``): ``window_global`` is ViTDet's backbone (14x14 windows, 4 global
blocks, decomposed relative positions), ``window`` has no global block, ``global`` is the ViT as pre-trained.

A global block attends over its whole stage at the backbone's ``img_size`` (``coco.img_size``); its
relative-position table is resized from the pre-trained one (bicubic, ``adapt_to_model``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mixmim.config import CHOICES

ATTENTION_LAYOUTS = CHOICES["coco.attention"]  # declared once, on the config
DEFAULT_ATTENTION = "window_global"
GLOBAL_EVERY = 6  # one global block in six in the second-to-last stage (ViTDet: 4 of 24 blocks for ViT-L)


def evenly_spaced_global(depth: int, every: int = GLOBAL_EVERY) -> list[int]:
    """Indexes (within a stage of ``depth`` blocks) of ``max(1, round(depth / every))`` global blocks, evenly
    spaced and ending with the last block: 18 -> [5, 11, 17], 2 -> [1]."""
    count = max(1, round(depth / every))
    return [(i + 1) * depth // count - 1 for i in range(count)]


def global_blocks(depths: Sequence[int], layout: str = DEFAULT_ATTENTION) -> tuple[int, ...]:
    """Flat indexes of the global blocks of a hierarchical backbone with per-stage ``depths``.

    Raises:
        ValueError: an unknown layout (the message lists the allowed ones).
    """
    if layout not in ATTENTION_LAYOUTS:
        raise ValueError(f"coco.attention must be one of {ATTENTION_LAYOUTS}, got {layout!r}")
    if layout == "window" or len(depths) < 2:
        return ()
    starts = [sum(depths[:i]) for i in range(len(depths))]
    penultimate, last = len(depths) - 2, len(depths) - 1
    windowed = depths[penultimate]
    chosen = list(range(windowed)) if layout == "global" else evenly_spaced_global(windowed)
    flat = [starts[penultimate] + j for j in chosen]
    flat += [starts[last] + j for j in range(depths[last])]
    return tuple(flat)
