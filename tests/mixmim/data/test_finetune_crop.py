"""finetune.crop_min_scale reaches timm's RandomResizedCrop (default: timm's and the official 0.08)."""

from __future__ import annotations

import dataclasses

from mixmim.config import FinetuneConfig
from mixmim.data.transforms import finetune_transform


def _crop_scale(transform) -> tuple[float, float]:
    ops = getattr(transform, "transforms", None) or transform.transform.transforms
    return next(op.scale for op in ops if type(op).__name__.startswith("RandomResizedCrop"))


def test_crop_floor_follows_the_config():
    assert _crop_scale(finetune_transform(32, FinetuneConfig())) == (0.08, 1.0)
    assert _crop_scale(finetune_transform(32, dataclasses.replace(FinetuneConfig(), crop_min_scale=0.7))) == (0.7, 1.0)
