"""Helpers of the evaluation tests (a module with a unique name, so that no other ``conftest`` shadows it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from mixmim.backbones import create_backbone
from mixmim.config import RunConfig, apply_overrides

BACKBONE = "mixmim_tiny_32"

# 64 training digits at 32 px (+ the fixed 300 val images), batch 16: 4 steps per epoch.
TINY: dict[str, Any] = {
    "seed": 3,
    "model.backbone": BACKBONE,
    "data.max_train_images": 64,
    "finetune.epochs": 2,
    "finetune.warmup_epochs": 1,
    "finetune.batch_size": 16,
    "finetune.checkpoint_every": 1,
    "linprobe.epochs": 2,
    "linprobe.warmup_epochs": 1,
    "linprobe.batch_size": 16,
    "knn.batch_size": 128,
    "knn.k": 5,
}


def tiny_config(overrides: dict[str, Any] | None = None, **kwargs: Any) -> RunConfig:
    """The tiny run config with ``overrides`` (dotted keys) and ``kwargs`` (top-level keys) applied."""
    return apply_overrides(RunConfig(experiment="tiny", name="run0"), {**TINY, **(overrides or {}), **kwargs})


def encoder_state(seed: int) -> dict[str, torch.Tensor]:
    """A headless ``mixmim_tiny_32`` state dict drawn with ``seed`` (stands in for pre-trained weights)."""
    torch.manual_seed(seed)
    return create_backbone(BACKBONE, num_classes=0).state_dict()


def official_pretrain_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """An official MixMIM pre-training file: flat encoder keys plus ``mask_token``/``decoder_*``, the
    optimizer, the epoch and the pickled ``argparse.Namespace`` of ``main_pretrain.py``."""
    model = dict(state)
    model["mask_token"] = torch.zeros(1, 1, 64)
    model["decoder_embed.weight"] = torch.randn(64, 128)
    model["decoder_pos_embed"] = torch.zeros(1, 16, 64)
    args = argparse.Namespace(model="mixmim_base", mask_ratio=0.5, epochs=600, blr=1.5e-4)
    torch.save({"model": model, "optimizer": {}, "epoch": 599, "scaler": {}, "args": args}, path)
    return path
