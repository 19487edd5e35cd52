"""Learning-rate schedule: linear warmup, then a half-cosine to ``min_lr``, per iteration (MAE/MixMIM).

A pure function of the step, so a resumed run gets exactly the lr it would have had, and tests can pin it.
Steps count optimizer updates (one per ``accum_iter`` micro-batches).
"""

from __future__ import annotations

import math


def lr_at_step(step: float, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """The learning rate at optimizer step ``step`` (0-based; may be fractional).

    ``lr = base_lr * step / warmup_steps`` during warmup (0 at step 0, as the official code), then
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup) / (total - warmup)``;
    ``min_lr`` from ``total_steps`` on.
    """
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps or total_steps <= warmup_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_steps(epochs: float, warmup_epochs: float, steps_per_epoch: int) -> tuple[int, int]:
    """``(total_steps, warmup_steps)`` in optimizer steps for a run of ``epochs`` with ``warmup_epochs``."""
    return round(epochs * steps_per_epoch), round(warmup_epochs * steps_per_epoch)
