"""The adapter as a detectron2 ``Backbone`` (``output_shape()``, ``size_divisibility``, ``padding_constraints``).

Imports detectron2: import this module only after :func:`mixmim.transfer.detectron2.require_detectron2`.
Hierarchical backbones give their stage maps (``p2``-``p5`` for MixMIM-B/L) and are wrapped by detectron2's
``FPN`` in the recipe; plain ViTs give ViTDet's simple feature pyramid with ``p6``, used as is.
"""

from __future__ import annotations

import logging

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone, GeneralizedRCNN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from mixmim.transfer.adapter import PyramidAdapter, build_adapter
from mixmim.transfer.layout import DEFAULT_ATTENTION
from mixmim.transfer.weights import load_pretrained

log = logging.getLogger(__name__)


class MixMIMBackbone(Backbone):
    """detectron2 backbone around :class:`mixmim.transfer.adapter.PyramidAdapter`.

    Args:
        backbone: a name of ``mixmim.backbones.BACKBONES``.
        img_size: detection resolution (px): the backbone's global blocks span a whole stage at this size.
        attention: layout of the hierarchical backbone's last two stages (``mixmim.transfer.layout``).
        drop_path: stochastic depth rate.
        out_channels: width of the plain ViT's simple pyramid.
        init_checkpoint: backbone weights (suite ``encoder.pth`` or official checkpoint); empty: random.
        square_pad: pad every batch to this square size (ViTDet's LSJ recipe: ``img_size``); 0: no.
    """

    def __init__(self, backbone: str, img_size: int = 1024, attention: str = DEFAULT_ATTENTION,
                 drop_path: float = 0.1, out_channels: int = 256, init_checkpoint: str = "", square_pad: int = 0):
        super().__init__()
        self.adapter = build_adapter(backbone, img_size, attention, drop_path, out_channels=out_channels)
        if init_checkpoint:
            load_pretrained(self.adapter, init_checkpoint)
        self._out_features = list(self.adapter.out_features)
        self._out_feature_channels = dict(self.adapter.out_channels)
        self._out_feature_strides = dict(self.adapter.out_strides)
        self._square_pad = square_pad

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, 3, H, W] (already padded by detectron2) -> ``{name: [B, C, H / s, W / s]}``."""
        return dict(self.adapter(x))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
                for name in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return self.adapter.size_divisibility

    @property
    def padding_constraints(self) -> dict[str, int]:
        return {"size_divisibility": self.size_divisibility, "square_size": self._square_pad}


class SizedRCNN(GeneralizedRCNN):
    """detectron2's ``GeneralizedRCNN`` that tells the adapter each image's size inside the padded batch, so the
    hierarchical backbone masks the padding out of attention (``PyramidAdapter.set_image_sizes``)."""

    def preprocess_image(self, batched_inputs):
        images = super().preprocess_image(batched_inputs)
        for module in self.backbone.modules():
            if isinstance(module, PyramidAdapter):
                module.set_image_sizes(images.image_sizes)
        return images


class TopLevelMaxPool(LastLevelMaxPool):
    """detectron2's ``LastLevelMaxPool`` on a chosen FPN level (it is fixed to ``p5``; small test backbones end
    at another stride)."""

    def __init__(self, in_feature: str = "p5"):
        super().__init__()
        self.in_feature = in_feature
