"""The ``linprobe`` stage: linear probing with MAE's protocol (``main_linprobe.py``).

- The encoder (``cfg.init``) is frozen (no gradients) and stays in eval mode; features are read after its
  final norm (the fine-tuning head switch ``model.fc_norm`` is not used here): ``linprobe.features=pooled``
  the backbone's pooling (``forward_head(pre_logits=True)``: the mean of the final tokens), ``cls_token`` the
  cls token (MAE's probe, ``main_linprobe.py`` with ``global_pool=False``; plain ViT only).
- The head is ``BatchNorm1d(C, affine=False, eps=1e-6)`` then ``Linear(C, classes)`` with a
  ``trunc_normal(std=0.01)`` weight and zero bias; only the head trains.
- Optimiser ``linprobe.optimizer``: LARS (timm's ``Lars``, momentum 0.9, trust coefficient 0.001; the
  trust ratio and weight decay apply to 2-D weights only, as MAE's LARS) or SGD (momentum 0.9), no weight
  decay on 1-D parameters. ``lr = blr * effective_batch / 256`` (blr 0.1), linear warmup then half-cosine
  per iteration; cross-entropy without label smoothing.
- Augmentation: RandomResizedCrop (area 0.08-1, bicubic; ``linprobe.crop=mae``: MAE's one-draw crop,
  :class:`mixmim.data.transforms.MAERandomResizedCrop`) + horizontal flip only; evaluation resize + center
  crop. Because the crops are random every epoch, the encoder runs on every batch (features are not cached).

timm's ``Lars`` equals MAE's LARS for the protocol's weight decay 0 (up to ``eps=1e-8`` in the trust ratio);
with weight decay it divides by ``|g| + wd |w|`` where MAE divides by ``|g + wd w|``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from timm.layers import trunc_normal_
from timm.optim import Lars
from torch import nn

from mixmim.backbones import Backbone
from mixmim.config import CHOICES, LinearProbeConfig, RunConfig, to_dict
from mixmim.data import build_crop_set, build_dataset, eval_transform
from mixmim.engine.recipe import make_recipe
from mixmim.engine.stage import StageContext, StageResult, run_stage
from mixmim.evaluate.features import pooled_features
from mixmim.evaluate.train_loop import TrainSpec, classifier_result, train_classifier
from mixmim.evaluate.weights import build_eval_backbone

logger = logging.getLogger(__name__)

STAGE = "linprobe"
OPTIMIZERS = CHOICES["linprobe.optimizer"]  # declared once, on the config
FEATURES = CHOICES["linprobe.features"]
MOMENTUM = 0.9
LARS_TRUST_COEFF = 0.001


class LinearProbeHead(nn.Sequential):
    """``BatchNorm1d(dim, affine=False, eps=1e-6)`` + ``Linear(dim, num_classes)``: [B, dim] -> [B, classes]."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))
        trunc_normal_(self[1].weight, std=0.01)
        nn.init.zeros_(self[1].bias)


class ProbeModel(nn.Module):
    """A frozen encoder (always in eval mode, no gradients) and a trainable :class:`LinearProbeHead`."""

    def __init__(self, encoder: Backbone, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.head = LinearProbeHead(encoder.num_features, num_classes)

    def train(self, mode: bool = True) -> ProbeModel:
        super().train(mode)
        self.encoder.eval()  # frozen: dropout/drop path off and norms fixed even while the head trains
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> logits [B, classes]."""
        with torch.no_grad():
            features = pooled_features(self.encoder, images)  # [B, C]
        return self.head(features.float())


def probe_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the probe's encoder options: no ``fc_norm`` (the features are read after the final norm), and
    the cls token as the feature when ``linprobe.features=cls_token``.

    Raises:
        ValueError: ``cls_token`` on a backbone without one (the hierarchical backbone).
    """
    if cfg.linprobe.features not in FEATURES:
        raise ValueError(f"linprobe.features={cfg.linprobe.features!r}: use one of {', '.join(FEATURES)}")
    if not cfg.model.fc_norm and cfg.linprobe.features == "pooled":
        return cfg
    model = dataclasses.replace(cfg.model, fc_norm=False)
    if cfg.linprobe.features == "cls_token":
        if not cfg.model.backbone.removeprefix("mixmim_").startswith("vit_"):
            raise ValueError(f"linprobe.features=cls_token needs a plain ViT (mixmim_vit_*), not {cfg.model.backbone}"
                             ": the hierarchical backbone has no cls token; use linprobe.features=pooled")
        model = dataclasses.replace(model, global_pool="token")
    return dataclasses.replace(cfg, model=model)


def build_probe_optimizer(head: nn.Module, cfg: LinearProbeConfig) -> torch.optim.Optimizer:
    """LARS or SGD (``cfg.optimizer``) over the head: 2-D weights decayed (and LARS-adapted), 1-D not.

    Raises:
        ValueError: an unknown optimizer name.
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"linprobe.optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
    matrices = [p for p in head.parameters() if p.ndim > 1]
    vectors = [p for p in head.parameters() if p.ndim <= 1]
    groups: list[dict[str, Any]] = [
        {"params": matrices, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": vectors, "weight_decay": 0.0, "lr_scale": 1.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=MOMENTUM)
    groups[0]["always_adapt"], groups[1]["always_adapt"] = True, False  # MAE: trust ratio for ndim > 1 only
    return Lars(groups, lr=0.0, momentum=MOMENTUM, trust_coeff=LARS_TRUST_COEFF)


def run_linprobe(
    cfg: RunConfig, run_dir: str | Path, *, device: torch.device | None = None, log_every: int = 10
) -> dict[str, Any]:
    """The ``linprobe`` stage (``cfg.linprobe``): skipped when its ``result.json`` exists, resumed from
    ``linprobe/checkpoint-last.pth`` (which holds the head only) when present.

    Raises:
        mixmim.weights.init_source.InitWeightsError: ``cfg.init`` names no usable checkpoint.

    Returns:
        The result as written to ``result.json`` (``metrics``: ``top1``, ``top5``, ``best_top1``, ...).
    """
    return run_stage(STAGE, cfg, run_dir, lambda ctx: _train(ctx, log_every), device=device)


def _train(ctx: StageContext, log_every: int) -> StageResult | None:
    """The stage's work: build, train through the Trainer, return the result (rank 0)."""
    cfg, run_dir, env, device = ctx.cfg, ctx.run_dir, ctx.env, ctx.device
    lp = cfg.linprobe
    # the runner seeded every generator: the random-init control is the same encoder in every stage
    encoder, source = build_eval_backbone(probe_config(cfg), run_dir, num_classes=0)
    size = encoder.img_size
    train_set = build_crop_set(cfg.data, size, lp.crop_min_scale, crop=lp.crop)  # data.decode: where it decodes
    val_set = build_dataset(cfg.data, "val", eval_transform(size))
    num_classes = len(train_set.classes)
    model = ProbeModel(encoder, num_classes).to(device)
    recipe = make_recipe(lp, env.world_size, device, len(train_set), stage="linprobe")
    spec = TrainSpec(
        stage=STAGE,
        model=model,
        trainable=model.head,
        optimizer=build_probe_optimizer(model.head, lp),
        criterion=nn.CrossEntropyLoss(),
        train_set=train_set,
        val_set=val_set,
        recipe=recipe,
        eval_batch_size=lp.batch_size,
        config=to_dict(lp),
        compile=lp.compile,
    )
    summary = train_classifier(spec, cfg, run_dir, env, device, log_every)
    if not env.is_main:
        return None
    return classifier_result(summary, recipe, train_set, source, {
        "num_classes": num_classes,
            "optimizer": lp.optimizer,
            "weight_decay": lp.weight_decay,
            "features": lp.features,
            "crop": lp.crop,
    })
