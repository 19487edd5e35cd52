"""The non-finite loss guard: a NaN/inf loss is never applied; stop with a clear message, or roll back.

Modes (``pretrain.nonfinite``): ``stop`` raises :class:`NonFiniteLossError` naming the step and the last good
checkpoint; ``rollback`` raises :class:`RollbackRequested`, which the training loop answers by reloading
its last checkpoint and continuing on a reseeded random path (replaying the same batch and mask would hit
the same value). A step that is still non-finite after ``max_rollbacks`` rollbacks stops the run.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch

from mixmim.engine.distributed import all_reduce_sum

NONFINITE_MODES = ("stop", "rollback")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class RollbackRequested(Exception):
    """Raised inside a step to unwind the loop to the last checkpoint (``nonfinite=rollback``)."""


def any_rank_nonfinite(value: float, device: torch.device) -> bool:
    """Whether ``value`` is NaN/inf on this or any other rank (all ranks must take the same branch)."""
    return all_reduce_sum(0.0 if math.isfinite(value) else 1.0, device) > 0


class NonFiniteGuard:
    """Decides what a non-finite loss does. ``mode``: ``stop`` | ``rollback``."""

    def __init__(self, mode: str, max_rollbacks: int = 3) -> None:
        if mode not in NONFINITE_MODES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_MODES}, got {mode!r}")
        self.mode = mode
        self.max_rollbacks = max_rollbacks
        self.rollbacks: Counter[int] = Counter()

    def handle(self, value: float, step: int, where: str, checkpoint: Path, checkpoint_step: int) -> None:
        """Raise :class:`NonFiniteLossError` or :class:`RollbackRequested` for the loss ``value`` at ``step``.

        Args:
            step: the optimizer step that was being computed (1-based: the step count it would have made).
            where: e.g. ``"epoch 3, iteration 17"``.
            checkpoint, checkpoint_step: the last good checkpoint and the step it holds.
        """
        self.rollbacks[step] += 1
        if self.mode == "rollback" and self.rollbacks[step] <= self.max_rollbacks:
            raise RollbackRequested(f"non-finite loss at step {step}: rolling back to step {checkpoint_step}")
        why = "" if self.mode == "stop" else f" after {self.max_rollbacks} rollbacks"
        raise NonFiniteLossError(
            f"non-finite loss ({value}) at step {step} ({where}){why}; the update was not applied. "
            f"Last good checkpoint: {checkpoint} (step {checkpoint_step}). Resume from it with a lower lr or "
            f"clip_grad, or set nonfinite=rollback."
        )
