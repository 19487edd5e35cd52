"""Batch-level Mixup/CutMix with label smoothing for fine-tuning (timm), and the matching loss.

Official recipe: mixup alpha 0.8, cutmix alpha 1.0, switch probability 0.5, applied to every batch
(``prob=1``, ``mode="batch"``), label smoothing 0.1. timm's ``Mixup`` draws from NumPy's global generator,
which the engine's checkpoints save and restore.
"""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from mixmim.config import FinetuneConfig

MIXUP_SWITCH_PROB = 0.5


def build_mixup(cfg: FinetuneConfig, num_classes: int) -> Mixup | None:
    """timm ``Mixup`` from ``cfg.mixup``/``cfg.cutmix``/``cfg.smoothing``; None when both alphas are 0.

    The returned callable maps ``(images [B,3,H,W], labels [B])`` to ``(mixed images, soft targets
    [B, num_classes])``; ``B`` must be even.
    """
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=1.0,
        switch_prob=MIXUP_SWITCH_PROB,
        mode="batch",
        label_smoothing=cfg.smoothing,
        num_classes=num_classes,
    )


def finetune_criterion(cfg: FinetuneConfig) -> torch.nn.Module:
    """The training loss that matches :func:`build_mixup`: soft-target CE with mixup, else (smoothed) CE."""
    if cfg.mixup > 0 or cfg.cutmix > 0:
        return SoftTargetCrossEntropy()  # the smoothing is already in the soft targets
    if cfg.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    return torch.nn.CrossEntropyLoss()
