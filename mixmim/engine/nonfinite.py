"""The non-finite guard: a NaN/inf loss (or gradient) is never applied; stop with a clear message, or roll back.

Two halves. On the device, :class:`NonFiniteFlag` notices a non-finite loss without a host read: once per
optimizer step it folds ``~isfinite`` of the accumulation group's losses and of its gradient norm (a finite
loss can still have NaN/inf gradients; the norm clipping computes, or one foreach norm without clipping; fp16
leaves inf gradients to its GradScaler) into a flag (MAX all-reduced over ranks, a device collective) that the
optimizer step takes as ``found_inf`` (:func:`~mixmim.engine.optim.step_unless`), as a GradScaler skips an inf
step. The flag is sticky: every later step is skipped too, so the model stays as it was before the first bad
step until the host reads the flag (logging steps, epoch ends, before every checkpoint)
and :class:`NonFiniteGuard` acts.

Modes (``pretrain.nonfinite``): ``stop`` raises :class:`NonFiniteLossError` naming the step and the last good
checkpoint; ``rollback`` raises :class:`RollbackRequested`, which the training loop answers by reloading
its last checkpoint and continuing on a reseeded random path (replaying the same batch and mask would hit
the same value). A step that is still non-finite after ``max_rollbacks`` rollbacks stops the run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
import torch.distributed as dist

from mixmim.config import CHOICES

NONFINITE_MODES = CHOICES["pretrain.nonfinite"]  # declared once, on the config


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class RollbackRequested(Exception):
    """Raised inside a step to unwind the loop to the last checkpoint (``nonfinite=rollback``)."""


class NonFiniteFlag:
    """Whether any rank saw a non-finite loss since the last :meth:`reset`, kept on the device.

    :attr:`found` is a float32 scalar (the dtype fused optimizers and GradScaler use for ``found_inf``):
    1.0 once an accumulation group of any rank had a NaN/inf loss, and from then on until :meth:`reset`.
    """

    def __init__(self, device: torch.device) -> None:
        self.found = torch.zeros((), dtype=torch.float32, device=device)

    def close_group(self, losses: list[torch.Tensor], grad_norm: torch.Tensor | None = None) -> torch.Tensor:
        """Fold one accumulation group's losses (device scalars, this rank's) and, when given, its gradient norm
        (a device scalar) into :attr:`found`; return it.

        Every rank must call it at the same optimizer step (a MAX all-reduce when distributed; no host read).
        """
        norm = [] if grad_norm is None else [grad_norm.to(losses[0].device, torch.float32)]
        values = torch.stack([*(loss.float() for loss in losses), *norm])
        bad = (~values.isfinite().all()).float()  # [] 1.0: a loss (or the gradient norm) of this group is NaN/inf
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        torch.maximum(self.found, bad, out=self.found)
        return self.found

    def read(self) -> bool:
        """The host read: whether a non-finite loss was seen (rank-identical)."""
        return bool(self.found.item())

    def reset(self) -> None:
        self.found.zero_()


class NonFiniteGuard:
    """Decides what a non-finite loss does. ``mode``: ``stop`` | ``rollback``."""

    def __init__(self, mode: str, max_rollbacks: int = 3) -> None:
        if mode not in NONFINITE_MODES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_MODES}, got {mode!r}")
        self.mode = mode
        self.max_rollbacks = max_rollbacks
        self.rollbacks: Counter[int] = Counter()

    def handle(self, value: float, step: int, where: str, checkpoint: Path, checkpoint_step: int,
               what: str = "loss") -> None:  # fmt: skip
        """Raise :class:`NonFiniteLossError` or :class:`RollbackRequested` for the loss ``value`` at ``step``.

        Args:
            what: ``loss``, or ``gradient norm`` (a NaN/inf gradient of a finite loss).
            step: the optimizer step that was being computed (1-based: the step count it would have made).
            where: e.g. ``"epoch 3, iteration 17"``.
            checkpoint, checkpoint_step: the last good checkpoint and the step it holds.
        """
        self.rollbacks[step] += 1
        if self.mode == "rollback" and self.rollbacks[step] <= self.max_rollbacks:
            raise RollbackRequested(f"non-finite {what} at step {step}: rolling back to step {checkpoint_step}")
        why = "" if self.mode == "stop" else f" after {self.max_rollbacks} rollbacks"
        raise NonFiniteLossError(
            f"non-finite {what} ({value}) at step {step} ({where}){why}; the update was not applied. "
            f"Last good checkpoint: {checkpoint} (step {checkpoint_step}). Resume from it with a lower lr or "
            f"clip_grad, or set nonfinite=rollback."
        )
