"""The tiny pre-training setting shared by the engine tests: the stand-in method on 128 digits at 16 px."""

from __future__ import annotations

from typing import Any

from mixmim.config import RunConfig, apply_overrides
from mixmim.data import build_dataset, pretrain_transform

IMG = 16
TINY = {
    "seed": 1,
    "data.digits_size": IMG,
    "data.max_train_images": 128,
    "pretrain.epochs": 4,
    "pretrain.warmup_epochs": 1,
    "pretrain.batch_size": 16,
    "pretrain.blr": 0.05,
    "pretrain.checkpoint_every": 2,
}


def tiny_config(**overrides: Any) -> RunConfig:
    """A 4-epoch, 8-steps-per-epoch pre-training config (``overrides``: dotted keys)."""
    return apply_overrides(RunConfig(experiment="tiny", name="run0"), {**TINY, **overrides})


def tiny_dataset(cfg: RunConfig):
    return build_dataset(cfg.data, "train", pretrain_transform(IMG, cfg.data.crop_min_scale))
