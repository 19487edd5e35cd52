"""The recipe a training stage actually runs: batch sizes, absolute lr, precision, step counts.

Built from a stage config (``PretrainConfig``, ``FinetuneConfig``, ``LinearProbeConfig``: any object with
``batch_size``, ``blr``, ``lr``, ``lr_scale_base``, ``epochs``, ``warmup_epochs``, ``max_steps``,
``precision`` and optionally ``accum_iter``, ``min_lr``, ``schedule``, ``warmup_lr``, ``lr_milestones``, ``lr_gamma``,
``scale_floor_lrs``), the world size and the dataset length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from mixmim.engine.optim import absolute_lr, effective_batch_size
from mixmim.engine.precision import resolve_precision
from mixmim.engine.schedule import LrSchedule, milestone_steps, schedule_steps


@dataclass(frozen=True)
class Recipe:
    """Resolved training recipe. Steps are optimizer steps; ``iters_per_epoch`` counts micro-batches."""

    batch_size: int  # per process
    world_size: int
    accum_iter: int
    effective_batch: int  # images per optimizer step
    blr: float
    lr: float  # absolute peak lr
    lr_scale_base: int
    min_lr: float
    precision: str  # fp32 | bf16 | fp16
    epochs: int
    iters_per_epoch: int  # micro-batches per process per epoch (a multiple of accum_iter)
    total_steps: int
    warmup_steps: int
    max_steps: int  # 0: no limit
    schedule: str = "cosine"  # mixmim.engine.schedule.SCHEDULES
    warmup_lr: float = 0.0  # absolute lr where warm-up starts
    milestones: tuple[int, ...] = ()  # optimizer steps (multistep)
    gamma: float = 0.1  # multistep factor

    def lr_schedule(self) -> LrSchedule:
        """The lr schedule this recipe runs (:class:`~mixmim.engine.schedule.LrSchedule`)."""
        return LrSchedule(self.schedule, self.total_steps, self.warmup_steps, self.lr, self.min_lr, self.warmup_lr,
                          self.milestones, self.gamma)

    @property
    def steps_per_epoch(self) -> int:
        return self.iters_per_epoch // self.accum_iter

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_recipe(
    stage_cfg: Any, world_size: int, device: torch.device, num_images: int, lr_scale_base: int | None = None,
    stage: str = "STAGE",
) -> Recipe:
    """Resolve ``stage_cfg`` for ``world_size`` processes on ``device`` over ``num_images`` training images.

    An epoch is ``num_images // (batch_size * world_size)`` global micro-batches (each rank takes its slice of
    each, :class:`~mixmim.data.ResumableSampler`; nothing is padded), cut to whole accumulation groups. The
    effective batch ``batch_size * world_size * accum_iter`` and so the absolute lr scale with the world size.

    Args:
        lr_scale_base: overrides ``stage_cfg.lr_scale_base`` (a method that scales by another base).
        stage: ``stage_cfg``'s section of the run config (``pretrain``, ``linprobe``, ``finetune``), which the
            too-small-dataset error names in the ``--set`` that fixes it.

    Raises:
        ValueError: the dataset is too small for one optimizer step per epoch.
    """
    accum = int(getattr(stage_cfg, "accum_iter", 1))
    base = int(lr_scale_base or stage_cfg.lr_scale_base)
    eff = effective_batch_size(stage_cfg.batch_size, world_size, accum)
    iters = num_images // (stage_cfg.batch_size * world_size) // accum * accum
    if iters == 0:
        fits = num_images // (world_size * accum)  # the largest per-process batch that gives one step
        fix = f"--set {stage}.batch_size={fits} (or lower)" if fits else f"more than {world_size * accum} images"
        raise ValueError(
            f"{stage}: {num_images} training images give no full step of batch {stage_cfg.batch_size} x accum "
            f"{accum} per process ({world_size} processes): pass {fix}, or give the stage more training images"
        )
    total, warmup = schedule_steps(stage_cfg.epochs, stage_cfg.warmup_epochs, iters // accum)
    # SimMIM scales its warm-up start and floor with the batch as the peak (scale_floor_lrs); others: absolute
    floor_scale = eff / base if getattr(stage_cfg, "scale_floor_lrs", False) else 1.0
    return Recipe(
        batch_size=stage_cfg.batch_size,
        world_size=world_size,
        accum_iter=accum,
        effective_batch=eff,
        blr=stage_cfg.blr,
        lr=absolute_lr(stage_cfg.blr, eff, base, stage_cfg.lr),
        lr_scale_base=base,
        min_lr=float(getattr(stage_cfg, "min_lr", 0.0)) * floor_scale,
        precision=resolve_precision(stage_cfg.precision, device),
        epochs=stage_cfg.epochs,
        iters_per_epoch=iters,
        total_steps=total,
        warmup_steps=warmup,
        max_steps=int(getattr(stage_cfg, "max_steps", 0)),
        schedule=getattr(stage_cfg, "schedule", "cosine"),
        warmup_lr=float(getattr(stage_cfg, "warmup_lr", 0.0)) * floor_scale,
        milestones=milestone_steps(tuple(getattr(stage_cfg, "lr_milestones", ())), total),
        gamma=float(getattr(stage_cfg, "lr_gamma", 0.1)),
    )
