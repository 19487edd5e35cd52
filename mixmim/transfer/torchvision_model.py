"""The built-in detector: torchvision's ``MaskRCNN`` on the adapter, with torchvision's FPN where needed.

Composition (:class:`AdapterWithFPN`, torchvision's ``BackboneWithFPN`` with the adapter as the body):
hierarchical backbones -> stage maps + LN -> ``FeaturePyramidNetwork`` (+ ``p<last+1>`` by max-pooling);
plain ViTs -> the simple feature pyramid, which already ends in per-level convs and ``p6`` (ViTDet, no FPN).
Anchors are 8x the level stride (32-512 px at strides 4-64, torchvision's and detectron2's default), three
aspect ratios. Box and mask heads are torchvision's (TwoMLPHead, four 3x3 convs).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from mixmim.config import CHOICES
from mixmim.transfer.adapter import PyramidAdapter, level_name

HEADS = CHOICES["coco.heads"]  # declared once, on the config
COMPACT = {"fpn": 64, "box_fc": 256, "rois_per_image": 128, "pre_nms": 600, "post_nms": 300, "detections": 50}
ANCHOR_PER_STRIDE = 8
ASPECT_RATIOS = (0.5, 1.0, 2.0)


class AdapterWithFPN(nn.Module):
    """Adapter (``body``) + FPN (``fpn``, absent for the plain ViT's simple pyramid); ``out_channels`` as
    torchvision expects. Output keys: ``p<log2 stride>`` for every level, the max-pooled one included."""

    def __init__(self, adapter: PyramidAdapter, fpn_channels: int = 256):
        super().__init__()
        self.body = adapter
        names = list(adapter.out_features)
        if adapter.has_neck:
            self.fpn = None
            self.out_channels = adapter.out_channels[names[-1]]
            self.out_strides = dict(adapter.out_strides)
        else:
            self.fpn = FeaturePyramidNetwork([adapter.out_channels[n] for n in names], fpn_channels,
                                             extra_blocks=LastLevelMaxPool())
            self.out_channels = fpn_channels
            top = adapter.out_strides[names[-1]] * 2
            strides = [*(adapter.out_strides[n] for n in names), top]
            self.out_strides = {level_name(s): s for s in strides}
        self.out_features = list(self.out_strides)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        if self.fpn is None:
            return feats
        return OrderedDict(zip(self.out_features, self.fpn(feats).values()))


def compact_heads(channels: int, num_classes: int) -> dict:
    """``MaskRCNN`` arguments of the compact heads (``coco.heads=compact``): narrow box and mask heads, fewer
    proposals and sampled RoIs, so that the built-in dataset trains on a CPU in seconds per step."""
    return dict(
        box_head=TwoMLPHead(channels * 7 * 7, COMPACT["box_fc"]),
        box_predictor=FastRCNNPredictor(COMPACT["box_fc"], num_classes + 1),
        mask_head=MaskRCNNHeads(channels, [channels] * 4, 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, num_classes + 1),
        box_batch_size_per_image=COMPACT["rois_per_image"],
        rpn_pre_nms_top_n_train=COMPACT["pre_nms"], rpn_post_nms_top_n_train=COMPACT["post_nms"],
        rpn_pre_nms_top_n_test=COMPACT["pre_nms"] // 2, rpn_post_nms_top_n_test=COMPACT["post_nms"] // 2,
        box_detections_per_img=COMPACT["detections"],
    )


def build_maskrcnn(adapter: PyramidAdapter, num_classes: int, img_size: int, heads: str = "standard",
                   **overrides) -> MaskRCNN:
    """torchvision Mask R-CNN on ``adapter`` for ``num_classes`` object classes (background excluded).

    Images are resized so that the short side is ``img_size`` and the long side at most ``img_size``
    (detectron2's ``ResizeShortestEdge(img_size, max_size=img_size)``), normalised with ImageNet statistics,
    and padded to the adapter's ``size_divisibility``.

    Args:
        heads: ``standard`` (torchvision's heads, FPN of 256 channels) or ``compact`` (:func:`compact_heads`,
            FPN of 64 channels; the plain ViT's simple pyramid keeps the adapter's width).
        overrides: further ``MaskRCNN`` arguments.
    """
    if heads not in HEADS:
        raise ValueError(f"coco.heads must be one of {HEADS}, got {heads!r}")
    backbone = AdapterWithFPN(adapter, COMPACT["fpn"] if heads == "compact" else 256)
    levels = backbone.out_features
    pooled = levels[:-1]  # the extra max-pooled level feeds the RPN only (as detectron2)
    anchors = AnchorGenerator(
        sizes=tuple((ANCHOR_PER_STRIDE * backbone.out_strides[n],) for n in levels),
        aspect_ratios=(ASPECT_RATIOS,) * len(levels))
    kwargs = dict(
        min_size=img_size, max_size=img_size, image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD), size_divisible=adapter.size_divisibility,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(pooled, output_size=7, sampling_ratio=0),
        mask_roi_pool=MultiScaleRoIAlign(pooled, output_size=14, sampling_ratio=0),
    )
    if heads == "compact":
        kwargs.update(compact_heads(backbone.out_channels, num_classes))
    kwargs.update(overrides)
    classes = None if "box_predictor" in kwargs else num_classes + 1
    model = MaskRCNN(backbone, num_classes=classes, **kwargs)
    model.transform.register_forward_hook(partial(_pass_image_sizes, adapter))
    return model


def _pass_image_sizes(adapter: PyramidAdapter, module: nn.Module, args, output) -> None:
    """After the transform batches (pads) the images: their sizes to the adapter, which masks the padding."""
    adapter.set_image_sizes(output[0].image_sizes)
