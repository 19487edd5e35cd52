"""The recipe a training stage actually runs: batch sizes, absolute lr, precision, step counts.

Built from a stage config (``PretrainConfig``, ``FinetuneConfig``, ``LinearProbeConfig``: any object with
``batch_size``, ``blr``, ``lr``, ``lr_scale_base``, ``epochs``, ``warmup_epochs``, ``max_steps``,
``precision`` and optionally ``accum_iter``, ``min_lr``), the world size and the dataset length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from mixmim.engine.optim import absolute_lr, effective_batch_size
from mixmim.engine.precision import resolve_precision
from mixmim.engine.schedule import schedule_steps


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

    @property
    def steps_per_epoch(self) -> int:
        return self.iters_per_epoch // self.accum_iter

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_recipe(
    stage_cfg: Any, world_size: int, device: torch.device, num_images: int, lr_scale_base: int | None = None
) -> Recipe:
    """Resolve ``stage_cfg`` for ``world_size`` processes on ``device`` over ``num_images`` training images.

    An epoch is ``num_images // (batch_size * world_size)`` global micro-batches (each rank takes its slice of
    each, :class:`~mixmim.data.ResumableSampler`; nothing is padded), cut to whole accumulation groups. The
    effective batch ``batch_size * world_size * accum_iter`` and so the absolute lr scale with the world size.

    Args:
        lr_scale_base: overrides ``stage_cfg.lr_scale_base`` (a method that scales by another base).

    Raises:
        ValueError: the dataset is too small for one optimizer step per epoch.
    """
    accum = int(getattr(stage_cfg, "accum_iter", 1))
    base = int(lr_scale_base or stage_cfg.lr_scale_base)
    eff = effective_batch_size(stage_cfg.batch_size, world_size, accum)
    iters = num_images // (stage_cfg.batch_size * world_size) // accum * accum
    if iters == 0:
        raise ValueError(
            f"{num_images} training images give no full step of batch {stage_cfg.batch_size} x accum {accum} "
            f"per process ({world_size} processes): lower the batch size"
        )
    total, warmup = schedule_steps(stage_cfg.epochs, stage_cfg.warmup_epochs, iters // accum)
    return Recipe(
        batch_size=stage_cfg.batch_size,
        world_size=world_size,
        accum_iter=accum,
        effective_batch=eff,
        blr=stage_cfg.blr,
        lr=absolute_lr(stage_cfg.blr, eff, base, stage_cfg.lr),
        lr_scale_base=base,
        min_lr=float(getattr(stage_cfg, "min_lr", 0.0)),
        precision=resolve_precision(stage_cfg.precision, device),
        epochs=stage_cfg.epochs,
        iters_per_epoch=iters,
        total_steps=total,
        warmup_steps=warmup,
        max_steps=int(getattr(stage_cfg, "max_steps", 0)),
    )
