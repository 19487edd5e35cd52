"""Mask R-CNN + FPN on the adapter as detectron2 LazyConfig objects, following ViTDet's COCO recipes.

From ``projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py`` and ``common/coco_loader_lsj.py``:
large-scale jitter at 1024 px (flip, ``ResizeScale`` 0.1-2.0, ``FixedSizeCrop``, square padding), RGB input
with ImageNet statistics, LN in the FPN and in the heads (4conv1fc box head, 2-conv-free RPN head as ViTDet),
AdamW (lr 1e-4 at 64 images per step, wd 0.1, no decay on norms and position tables) with layer-wise lr decay,
drop path, AMP, 184,375 iterations for 100 epochs (the number is recomputed from the training-set size and
batch), steps x0.1 at 8/9 and 26/27, 250 warmup iterations. Hierarchical backbones get detectron2's ``FPN``
(as the Swin and MViTv2 entries of ViTDet); plain ViTs get the simple feature pyramid (ViTDet).

:func:`mask_rcnn_recipe` returns the five top-level LazyConfig nodes; the files in ``configs/`` call it and
the ``coco`` stage calls it with the run's values.
"""

from __future__ import annotations

from typing import Any

import detectron2.data.transforms as T
import torch
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import FPN
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from mixmim.transfer.adapter import build_adapter, level_name
from mixmim.transfer.detectron2.backbone import MixMIMBackbone, SizedRCNN, TopLevelMaxPool
from mixmim.transfer.layout import DEFAULT_ATTENTION
from mixmim.transfer.lr_decay import encoder_lr_factor_func
from mixmim.transfer.schedule import WARMUP_FACTOR, step_values

LR_SCALE_BASE = 64
COCO_TRAIN_IMAGES = 118_000  # ViTDet's epoch: "100 ep = 184375 iters * 64 images/iter / 118000 images/ep"
NO_DECAY = ("absolute_pos_embed", "pos_embed", "cls_token", "relative_position_bias_table")
COMPACT_D2 = {"fpn": 64, "box_fc": 256, "rois_per_image": 128, "pre_nms": 600, "post_nms": 300}


def pyramid_levels(backbone: str, out_channels: int = 256) -> tuple[dict[str, int], bool]:
    """``({level: stride}, has_neck)`` of the adapter on ``backbone``, from a meta-device copy."""
    with torch.device("meta"):
        adapter = build_adapter(backbone, 224, out_channels=out_channels)
    return dict(adapter.out_strides), adapter.has_neck


def _model(backbone: str, img_size: int, attention: str, drop_path: float, init_checkpoint: str,
           num_classes: int, compact: bool, score_thresh: float = 0.05):
    """GeneralizedRCNN: detectron2's Mask R-CNN FPN with ViTDet's changes, on the adapter."""
    channels = COMPACT_D2["fpn"] if compact else 256
    model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
    model._target_ = SizedRCNN  # GeneralizedRCNN + the images' sizes to the adapter (padding masked)
    constants = model_zoo.get_config("common/data/constants.py").constants
    model.pixel_mean, model.pixel_std = constants.imagenet_rgb256_mean, constants.imagenet_rgb256_std
    model.input_format = "RGB"
    strides, has_neck = pyramid_levels(backbone, channels)
    body = L(MixMIMBackbone)(backbone=backbone, img_size=img_size, attention=attention, drop_path=drop_path,
                             out_channels=channels, init_checkpoint=init_checkpoint, square_pad=img_size)
    if has_neck:  # ViT: the simple feature pyramid already ends in per-level convs and p6
        model.backbone = body
        levels = list(strides)
    else:
        top = max(strides.values()) * 2
        levels = [level_name(s) for s in [*strides.values(), top]]
        model.backbone = L(FPN)(bottom_up=body, in_features=list(strides), out_channels=channels, norm="LN",
                                top_block=L(TopLevelMaxPool)(in_feature=levels[-2]), square_pad=img_size)
        strides = dict(zip(levels, [*strides.values(), top]))
    pooled = levels[:-1]
    rpn, heads = model.proposal_generator, model.roi_heads
    rpn.in_features = levels
    rpn.head.in_channels = channels
    rpn.head.conv_dims = [-1, -1]  # ViTDet: 2 convs in the RPN head
    rpn.anchor_generator.sizes = [[8 * strides[n]] for n in levels]
    rpn.anchor_generator.strides = [strides[n] for n in levels]
    heads.num_classes = num_classes
    heads.box_predictor.test_score_thresh = score_thresh
    heads.box_in_features = heads.mask_in_features = pooled
    heads.box_pooler.scales = heads.mask_pooler.scales = [1.0 / strides[n] for n in pooled]
    heads.box_head.input_shape.channels = heads.mask_head.input_shape.channels = channels
    heads.box_head.conv_dims = [channels] * 4  # ViTDet: 4conv1fc box head with LN
    heads.box_head.fc_dims = [COMPACT_D2["box_fc"] if compact else 1024]
    heads.box_predictor.input_shape.channels = heads.box_head.fc_dims[0]
    heads.mask_head.conv_dims = [channels] * 5
    heads.box_head.conv_norm = heads.mask_head.conv_norm = "LN"
    if compact:
        heads.batch_size_per_image = COMPACT_D2["rois_per_image"]
        rpn.pre_nms_topk = [COMPACT_D2["pre_nms"], COMPACT_D2["pre_nms"] // 2]
        rpn.post_nms_topk = [COMPACT_D2["post_nms"], COMPACT_D2["post_nms"] // 2]
    return model


def _dataloader(img_size: int, batch_size: int, train_dataset: str, test_dataset: str, num_workers: int,
                lsj: bool = True):
    """ViTDet's large-scale-jitter loader (``coco_loader_lsj.py``) at ``img_size``; ``lsj=False``: flip and
    resize to ``img_size`` only (the debug variant, as the built-in engine)."""
    dataloader = model_zoo.get_config("common/data/coco.py").dataloader
    dataloader.train.dataset.names = train_dataset
    dataloader.train.mapper.augmentations = [
        L(T.RandomFlip)(horizontal=True),
        L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=img_size, target_width=img_size),
        L(T.FixedSizeCrop)(crop_size=(img_size, img_size), pad=False),
    ] if lsj else [L(T.RandomFlip)(horizontal=True), L(T.ResizeShortestEdge)(short_edge_length=img_size,
                                                                               max_size=img_size)]
    dataloader.train.mapper.image_format = "RGB"
    dataloader.train.mapper.recompute_boxes = True  # boxes change with the crop
    dataloader.train.total_batch_size = batch_size
    dataloader.train.num_workers = dataloader.test.num_workers = num_workers
    dataloader.test.dataset.names = test_dataset
    dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=img_size, max_size=img_size)]
    dataloader.evaluator.dataset_name = test_dataset
    dataloader.evaluator.use_fast_impl = False  # pycocotools' COCOeval, as the built-in engine
    return dataloader


def mask_rcnn_recipe(backbone: str = "mixmim_base", epochs: float = 100, img_size: int = 1024,
                     batch_size: int = 64, lr: float = 1e-4, layer_decay: float = 0.7, drop_path: float = 0.1,
                     attention: str = DEFAULT_ATTENTION, amp: bool = True, weight_decay: float = 0.1,
                     warmup_steps: int = 250, train_dataset: str = "coco_2017_train",
                     test_dataset: str = "coco_2017_val", num_train_images: int = COCO_TRAIN_IMAGES,
                     num_classes: int = 80, init_checkpoint: str = "", compact: bool = False,
                     num_workers: int = 4, output_dir: str = "./output", device: str = "cuda",
                     score_thresh: float = 0.05, lsj: bool = True) -> dict[str, Any]:
    """The LazyConfig nodes ``model``, ``dataloader``, ``optimizer``, ``lr_multiplier``, ``train``.

    ``lr`` is absolute (ViTDet: 1e-4 for 64 images per step); ``epochs`` become
    ``floor(epochs * num_train_images / batch_size)`` iterations (100 -> 184,375 and 50 -> 92,187 on COCO at
    batch 64, as ViTDet's ``184375 // 2``).
    """
    max_iter = max(1, int(epochs * num_train_images // batch_size))  # ViTDet floors: 50 ep -> 184375 // 2
    train = model_zoo.get_config("common/train.py").train
    train.update(output_dir=output_dir, init_checkpoint="", max_iter=max_iter, eval_period=max_iter,
                 device=device, log_period=20)
    train.amp.enabled = amp
    train.ddp.fp16_compression = amp
    train.checkpointer.period = min(5000, max_iter)
    milestones, values = step_values(max_iter)
    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=values, milestones=milestones, num_updates=max_iter),
        warmup_length=min(warmup_steps, max_iter) / max_iter, warmup_factor=WARMUP_FACTOR)
    optimizer = L(torch.optim.AdamW)(
        params=L(get_default_optimizer_params)(
            base_lr="${..lr}", weight_decay_norm=0.0,
            lr_factor_func=L(encoder_lr_factor_func)(backbone=backbone, layer_decay=layer_decay),
            overrides={name: {"weight_decay": 0.0} for name in NO_DECAY}),
        lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    return {
        "model": _model(backbone, img_size, attention, drop_path, init_checkpoint, num_classes, compact,
                        score_thresh),
        "dataloader": _dataloader(img_size, batch_size, train_dataset, test_dataset, num_workers, lsj),
        "optimizer": optimizer,
        "lr_multiplier": lr_multiplier,
        "train": train,
    }


def paper_config(backbone: str, epochs: int = 100) -> dict[str, Any]:
    """The paper recipe of ``backbone`` (``mixmim.transfer.recipes.coco_paper_overrides``) as LazyConfig nodes,
    on COCO 2017 as registered by detectron2 (``$DETECTRON2_DATASETS/coco``)."""
    from mixmim.transfer.recipes import coco_paper_overrides

    o = {k.removeprefix("coco."): v for k, v in coco_paper_overrides(backbone, epochs).items()}
    return mask_rcnn_recipe(backbone=backbone, epochs=o["epochs"], img_size=o["img_size"],
                            batch_size=o["batch_size"], lr=o["blr"] * o["batch_size"] / LR_SCALE_BASE,
                            layer_decay=o["layer_decay"], drop_path=o["drop_path"], attention=o["attention"],
                            amp=True, weight_decay=o["weight_decay"], warmup_steps=o["warmup_steps"])
