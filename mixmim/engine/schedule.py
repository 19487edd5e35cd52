"""Learning-rate schedules, per optimizer step: each one official scheduler, named in the recipe.

Pure functions of the step, so a resumed run gets exactly the lr it would have had, and tests can pin it
(``tests/mixmim/engine/test_official_schedules.py`` compares them with traces of the official schedulers).
Steps count optimizer updates (one per ``accum_iter`` micro-batches). :data:`SCHEDULES`:

- ``cosine`` (MAE, MixMIM ``util/lr_sched.adjust_learning_rate``): linear warm-up from 0, then a half-cosine
  from the peak to ``min_lr`` over the steps after warm-up; every value times the group's ``lr_scale``.
- ``beit_cosine`` (unilm ``beit/utils.cosine_scheduler``): ``np.linspace(warmup_lr, peak, warmup_steps)``
  (the peak is reached one step early), then the same half-cosine; times ``lr_scale``.
- ``timm_cosine`` (SimMIM fine-tuning: timm ``CosineLRScheduler(t_in_epochs=False)``): per group, linear
  warm-up from ``warmup_lr`` to ``peak x lr_scale``, then ``min_lr + (peak x lr_scale - min_lr) x (1 +
  cos(pi t / total)) / 2`` with ``t`` counted from step 0 (warm-up included). ``warmup_lr`` and ``min_lr`` are
  *not* scaled by layer decay.
- ``multistep`` (SimMIM pre-training: its ``MultiStepLRScheduler``): the same per-group warm-up, then
  ``peak x lr_scale x gamma ** (milestones passed)``.

The two timm-style schedules are read as the official loops apply them: ``lr_scheduler.step_update(t)``
runs *after* update ``t``, so update ``k`` trains with the scheduler's value at ``max(k - 1, 0)``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from mixmim.config import CHOICES

SCHEDULES = CHOICES["pretrain.schedule"]  # declared once, on the config
_TIMM_STYLE = ("timm_cosine", "multistep")  # per-group warm-up/floor, value applied one update late


def lr_at_step(step: float, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """The learning rate at optimizer step ``step`` (0-based; may be fractional) of the ``cosine`` schedule.

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


def _beit_cosine(step: int, s: LrSchedule) -> float:
    """unilm ``cosine_scheduler(peak, min_lr, ..., start_warmup_value=warmup_lr)[step]`` (one lr for all
    groups; the caller multiplies by ``lr_scale``)."""
    if step < s.warmup_steps:
        if s.warmup_steps == 1:
            return s.warmup_lr
        return s.warmup_lr + step * (s.peak - s.warmup_lr) / (s.warmup_steps - 1)  # np.linspace
    decay = s.total_steps - s.warmup_steps
    if step >= s.total_steps or decay <= 0:
        return s.min_lr
    i = step - s.warmup_steps
    return s.min_lr + 0.5 * (s.peak - s.min_lr) * (1 + math.cos(math.pi * i / decay))


def _timm_style(t: int, s: LrSchedule, scale: float) -> float:
    """The value of timm's scheduler (or SimMIM's multi-step one) at update count ``t`` for a group whose
    initial lr is ``peak x scale``."""
    base = s.peak * scale
    if t < s.warmup_steps:
        return s.warmup_lr + t * (base - s.warmup_lr) / s.warmup_steps
    if s.kind == "multistep":
        return base * s.gamma ** bisect.bisect_right(s.milestones, t)
    if t >= s.total_steps:  # cycle_limit=1: past the cycle, the floor
        return s.min_lr
    return s.min_lr + 0.5 * (base - s.min_lr) * (1 + math.cos(math.pi * t / s.total_steps))


@dataclass(frozen=True)
class LrSchedule:
    """One of :data:`SCHEDULES` with its parameters (lrs absolute; steps are optimizer steps).

    Attributes:
        warmup_lr: where warm-up starts (``cosine`` always starts at 0).
        milestones: steps from which the lr is multiplied by one more ``gamma`` (``multistep``).
    """

    kind: str
    total_steps: int
    warmup_steps: int
    peak: float
    min_lr: float = 0.0
    warmup_lr: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.kind!r}: use one of {', '.join(SCHEDULES)}")

    def lr(self, step: int, scale: float = 1.0) -> float:
        """The lr of optimizer step ``step`` (0-based) for a parameter group of ``lr_scale`` ``scale``."""
        if self.kind == "cosine":
            return lr_at_step(step, self.total_steps, self.warmup_steps, self.peak, self.min_lr) * scale
        if self.kind == "beit_cosine":
            return _beit_cosine(step, self) * scale
        return _timm_style(max(step - 1, 0), self, scale)


def schedule_steps(epochs: float, warmup_epochs: float, steps_per_epoch: int) -> tuple[int, int]:
    """``(total_steps, warmup_steps)`` in optimizer steps for a run of ``epochs`` with ``warmup_epochs``."""
    return round(epochs * steps_per_epoch), round(warmup_epochs * steps_per_epoch)


def milestone_steps(fractions: tuple[float, ...], total_steps: int) -> tuple[int, ...]:
    """Milestones given as fractions of the run (SimMIM's epoch 700 of 800: 0.875) -> optimizer steps."""
    return tuple(round(f * total_steps) for f in fractions)
