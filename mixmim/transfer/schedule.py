"""ViTDet's detection lr schedule as a pure function of the step: linear warmup, then steps x0.1, x0.01.

ViTDet (``projects/ViTDet/configs/COCO/*_100ep.py``): 184,375 iterations, milestones 163,889 and 177,546
(8/9 and 26/27 of the run), warmup 250 iterations from a factor 0.001 (detectron2's ``WarmupParamScheduler``,
linear). The 50-epoch recipes halve every number, so the milestones stay at the same fractions.
"""

from __future__ import annotations

MILESTONE_FRACTIONS = (8 / 9, 26 / 27)
MILESTONE_VALUES = (1.0, 0.1, 0.01)
WARMUP_FACTOR = 0.001


def milestones(total_steps: int) -> list[int]:
    """Steps at which the lr drops (``[163889, 177546]`` for 184,375 steps); strictly increasing and inside
    the run (a very short run keeps fewer drops)."""
    out: list[int] = []
    for fraction in MILESTONE_FRACTIONS:
        step = min(round(total_steps * fraction), total_steps - 1)
        if step > (out[-1] if out else 0):
            out.append(step)
    return out


def step_values(total_steps: int) -> tuple[list[int], list[float]]:
    """``(milestones, values)`` for fvcore's ``MultiStepParamScheduler``."""
    steps = milestones(total_steps)
    return steps, list(MILESTONE_VALUES[: len(steps) + 1])


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based)."""
    value = MILESTONE_VALUES[sum(step >= m for m in milestones(total_steps))]
    if step < warmup_steps:
        alpha = step / warmup_steps
        value *= WARMUP_FACTOR * (1 - alpha) + alpha
    return value
