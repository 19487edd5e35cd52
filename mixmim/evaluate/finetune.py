"""The ``finetune`` stage: end-to-end fine-tuning with the official MixMIM recipe (official-mixmim.md).

Recipe (``FinetuneConfig`` defaults, from ``exp/base_600ep``; the official ``main_finetune.py`` order):

1. The backbone with drop path ``drop_path`` (0.1), encoder weights from ``cfg.init``
   (:mod:`mixmim.evaluate.weights`; position embeddings and relative-position tables interpolated), then a
   new head, ``trunc_normal(std=2e-5)`` weight and zero bias (official: weight re-initialised after loading).
2. AdamW (default betas, weight decay 0.05) over layer-wise lr-decay groups (0.7, official layer ids, head
   and final norm at 0.7 while ``official_head_decay``; :mod:`mixmim.evaluate.layer_decay`).
3. ``lr = blr * effective_batch / 256`` (blr 5e-4) on the schedule ``finetune.schedule`` names (MixMIM's
   ``cosine``: linear warmup then half-cosine to ``min_lr`` per iteration; :mod:`mixmim.engine.schedule`),
   gradient clipping at ``clip_grad`` (MixMIM: none); AMP (bf16/fp16) on GPU, fp32 on CPU.
4. timm transforms (RandAugment ``rand-m9-mstd0.5-inc1``, random erasing 0.25), Mixup 0.8 / CutMix 1.0 /
   label smoothing 0.1 with ``SoftTargetCrossEntropy`` (:mod:`mixmim.data.mixup`).
5. Validation top-1/top-5 (resize + center crop, bicubic) after every epoch; ``metrics.top1`` is the last
   epoch's, ``best_top1`` the best over epochs (the official log's "max accuracy").

Weight decay as the official fine-tuning: 1-D parameters and the names the backbone's ``no_weight_decay()``
lists (MixMIM: none) are not decayed, so MixMIM's relative-position tables are, as officially
(``official_quirks=True``; False also exempts the ``no_weight_decay_keywords()`` names).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mixmim.config import RunConfig, to_dict
from mixmim.data import build_dataset, build_mixup, eval_transform, finetune_criterion, finetune_transform
from mixmim.engine.optim import build_adamw
from mixmim.engine.recipe import make_recipe
from mixmim.engine.stage import StageContext, StageResult, run_stage
from mixmim.evaluate.layer_decay import finetune_param_groups
from mixmim.evaluate.train_loop import TrainSpec, classifier_result, train_classifier
from mixmim.evaluate.weights import build_eval_backbone

logger = logging.getLogger(__name__)

STAGE = "finetune"


def run_finetune(
    cfg: RunConfig, run_dir: str | Path, *, device: torch.device | None = None, log_every: int = 10
) -> dict[str, Any]:
    """The ``finetune`` stage (``cfg.finetune``): skipped when its ``result.json`` exists, resumed from
    ``finetune/checkpoint-last.pth`` when present.

    Raises:
        mixmim.weights.init_source.InitWeightsError: ``cfg.init`` names no usable checkpoint.
        ValueError: Mixup/CutMix with an odd per-process batch, or a dataset too small for one step.

    Returns:
        The result as written to ``result.json`` (``metrics``: ``top1``, ``top5``, ``best_top1``, ...).
    """
    return run_stage(STAGE, cfg, run_dir, lambda ctx: _train(ctx, log_every), device=device)


def _train(ctx: StageContext, log_every: int) -> StageResult | None:
    """The stage's work: build, train through the Trainer, return the result (rank 0)."""
    cfg, run_dir, env, device = ctx.cfg, ctx.run_dir, ctx.env, ctx.device
    ft = cfg.finetune
    # the runner seeded every generator (cfg.seed) before this
    backbone, source = build_eval_backbone(cfg, run_dir, num_classes=0, drop_path=ft.drop_path)
    train_set = build_dataset(cfg.data, "train", finetune_transform(backbone.img_size, ft))
    val_set = build_dataset(cfg.data, "val", eval_transform(backbone.img_size))
    num_classes = len(train_set.classes)
    backbone.reset_classifier(num_classes)  # trunc-normal std 2e-5, zero bias
    backbone.to(device)
    recipe = make_recipe(ft, env.world_size, device, len(train_set), stage="finetune")
    mixup = build_mixup(ft, num_classes)
    if mixup is not None and recipe.batch_size % 2:
        raise ValueError(f"finetune.batch_size={recipe.batch_size}: Mixup/CutMix pair images, use an even batch")
    spec = TrainSpec(
        stage=STAGE,
        model=backbone,
        trainable=backbone,
        optimizer=build_adamw(finetune_param_groups(backbone, ft)),  # official: AdamW default betas
        criterion=finetune_criterion(ft),
        train_set=train_set,
        val_set=val_set,
        recipe=recipe,
        eval_batch_size=ft.batch_size,
        mixup=mixup,
        config=to_dict(ft),
        compile=ft.compile,
        checkpoint_every=ft.checkpoint_every,
        clip_grad=ft.clip_grad,
    )
    summary = train_classifier(spec, cfg, run_dir, env, device, log_every)
    if not env.is_main:
        return None
    return classifier_result(summary, recipe, train_set, source, {
        "num_classes": num_classes,
            "layer_decay": ft.layer_decay,
            "official_head_decay": ft.official_head_decay,
            "drop_path": ft.drop_path,
            "mixup": ft.mixup,
            "cutmix": ft.cutmix,
            "smoothing": ft.smoothing,
            "fc_norm": cfg.model.fc_norm,
            "train_pos_embed": cfg.model.train_pos_embed,
    })
