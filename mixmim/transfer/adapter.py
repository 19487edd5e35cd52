"""One adapter that turns either shared backbone into a multi-scale feature provider for detection.

- **Hierarchical** (MixMIM): the maps of its stages (``Backbone.forward_pyramid``, strides 4-32 for
  MixMIM-B/L), each through its own LayerNorm, as Swin's detection backbone does. The last stage's norm *is*
  the pre-trained final norm (its weights load from ``norm.*``); the backbone's own final norm is removed.
  The engines add an FPN on top (torchvision's or detectron2's).
- **Plain ViT**: ViTDet's backbone layout (``vitdet.py``: 14x14 windows with global blocks, decomposed relative
  positions; ``coco.attention=global`` keeps the pre-training ViT) and ViTDet's simple feature pyramid on the
  single stride-16 map: deconv x4 (deconv, LN, GELU,
  deconv), deconv x2, identity, max-pool /2, then per level a 1x1 conv + LN and a 3x3 conv + LN to
  ``out_channels``, plus the extra level ``p6`` (max-pool of ``p5`` with stride 2). No FPN on top (ViTDet).

Inputs of any size are zero-padded (bottom, right) to a multiple of :attr:`PyramidAdapter.size_divisibility`,
so level ``s`` is exactly ``(H_pad / s, W_pad / s)``. The hierarchical backbone masks that padding, and the
engines' batch padding (image sizes from :meth:`PyramidAdapter.set_image_sizes`), out of attention: an image's
stage maps do not depend on the padding around it. Parameter names: the backbone under ``encoder.``
(its own keys, so layer-wise lr decay uses ``Backbone.layer_id``), new layers under ``stage_norms.`` or
``simple_pyramid.``. Output names: ``stage1``... for the hierarchical maps (an FPN renames them ``p2``...),
``p2``... ``p6`` for the plain ViT's final levels.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from mixmim.backbones import Backbone, create_backbone
from mixmim.transfer.layout import DEFAULT_ATTENTION, global_blocks
from mixmim.transfer.vitdet import is_vitdet, to_vitdet, vitdet_features

log = logging.getLogger(__name__)

SIMPLE_SCALES = (4.0, 2.0, 1.0, 0.5)  # ViTDet's scale factors of the stride-16 map


def level_name(stride: int) -> str:
    """FPN naming: ``p<log2 stride>`` (stride 4 -> ``p2``)."""
    return f"p{int(math.log2(stride))}"


def _scale_ops(dim: int, scale: float) -> tuple[nn.Module, int]:
    """ViTDet's resampling of the [B, dim, H, W] map by ``scale``; returns (module, output channels)."""
    if scale == 4.0:
        ops = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm2d(dim // 2), nn.GELU(),
                            nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2))
        return ops, dim // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(dim, dim // 2, 2, 2), dim // 2
    if scale == 1.0:
        return nn.Identity(), dim
    if scale == 0.5:
        return nn.MaxPool2d(2, 2), dim
    raise ValueError(f"unsupported scale factor {scale}")


class SimplePyramidLevel(nn.Module):
    """One level of ViTDet's simple feature pyramid: resample, 1x1 conv + LN, 3x3 conv + LN."""

    def __init__(self, dim: int, scale: float, out_channels: int):
        super().__init__()
        self.resample, mid = _scale_ops(dim, scale)
        self.lateral = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.lateral_norm = LayerNorm2d(out_channels)
        self.output = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.output_norm = LayerNorm2d(out_channels)
        for conv in (self.lateral, self.output):  # detectron2's c2_xavier_fill
            nn.init.kaiming_uniform_(conv.weight, a=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lateral_norm(self.lateral(self.resample(x)))
        return self.output_norm(self.output(x))


class PyramidAdapter(nn.Module):
    """Multi-scale features of a shared backbone (see the module docstring).

    Attributes:
        encoder: the wrapped backbone (its final norm and head removed for the hierarchical one).
        kind: ``hierarchical`` or ``plain``.
        out_features: output names in order of increasing stride: ``stage1``... (hierarchical: inputs of an
            FPN, whose outputs are the ``p<log2 stride>`` names) or ``p2``... ``p6`` (plain ViT: final levels).
        out_channels: channels per level name.
        out_strides: stride (px) per level name.
        has_neck: True when the outputs are final detection features (plain ViT: the simple pyramid already
            has per-level convs and ``p6``); False when an FPN must be added (hierarchical).
    """

    def __init__(self, encoder: Backbone, out_channels: int = 256):
        super().__init__()
        self.encoder = encoder
        self.kind = "hierarchical" if len(encoder.stage_dims) > 1 else "plain"
        if self.kind == "hierarchical":
            self.stage_norms = nn.ModuleList(LayerNorm2d(c, eps=1e-5) for c in encoder.stage_dims)
            encoder.norm = nn.Identity()  # its weights live on as stage_norms[-1] (weights.py)
            encoder.head = nn.Identity()
            strides, channels = list(encoder.strides), list(encoder.stage_dims)
            self.has_neck = False
        else:
            dim, patch = encoder.stage_dims[0], encoder.patch_size
            self.simple_pyramid = nn.ModuleList(SimplePyramidLevel(dim, s, out_channels) for s in SIMPLE_SCALES)
            encoder.head = nn.Identity()
            strides = [int(patch / s) for s in SIMPLE_SCALES] + [patch * 4]  # + p6
            channels = [out_channels] * len(strides)
            self.has_neck = True
        if self.has_neck:
            self.out_features = [level_name(s) for s in strides]
        else:
            self.out_features = [f"stage{i + 1}" for i in range(len(strides))]
        self.out_strides = dict(zip(self.out_features, strides))
        self.out_channels = dict(zip(self.out_features, channels))

        self._image_sizes: torch.Tensor | None = None

    def set_image_sizes(self, sizes) -> None:
        """The (height, width) of every image of the next batch inside its padding (the engines call this
        before the backbone runs; used once). Without it the whole input counts as image."""
        self._image_sizes = torch.as_tensor([tuple(s) for s in sizes], dtype=torch.long)

    @property
    def size_divisibility(self) -> int:
        """Inputs are padded to a multiple of this (the largest stride) so that levels nest exactly."""
        return max(self.out_strides.values())

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad [B, 3, H, W] at the bottom and right to a multiple of :attr:`size_divisibility`."""
        d = self.size_divisibility
        pad_h, pad_w = (-x.shape[2]) % d, (-x.shape[3]) % d
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """[B, 3, H, W] -> ``{name: [B, C, H_pad / stride, W_pad / stride]}`` in order of increasing stride."""
        sizes, self._image_sizes = self._image_sizes, None
        if sizes is None or len(sizes) != x.shape[0]:
            sizes = torch.tensor([x.shape[2:]] * x.shape[0])
        x = self.pad(x)
        if self.kind == "hierarchical":
            pyramid = self.encoder.forward_pyramid(x, valid=sizes.to(x.device))
            maps = [norm(m) for norm, m in zip(self.stage_norms, pyramid)]
        else:
            if is_vitdet(self.encoder):
                single = vitdet_features(self.encoder, x)  # [B, D, H/16, W/16]
            else:
                (single,) = self.encoder.forward_pyramid(x)
            maps = [level(single) for level in self.simple_pyramid]
            maps.append(F.max_pool2d(maps[-1], kernel_size=1, stride=2))  # p6, detectron2's LastLevelMaxPool
        return OrderedDict(zip(self.out_features, maps))


def build_adapter(backbone: str, img_size: int, attention: str = DEFAULT_ATTENTION, drop_path: float = 0.0,
                  out_channels: int = 256, **backbone_kwargs) -> PyramidAdapter:
    """A randomly initialised adapter on the registered backbone ``backbone`` built at ``img_size``.

    Args:
        backbone: a name of ``mixmim.backbones.BACKBONES``.
        img_size: detection resolution (px); global blocks attend over whole stages at this size.
        attention: hierarchical backbones' layout of the last two stages (``layout.py``); for plain ViTs
            ``window_global`` is ViTDet's layout, ``window`` windows only, ``global`` the ViT as pre-trained
            (``vitdet.py``).
        drop_path: stochastic depth rate of the backbone.
        out_channels: channels of the plain ViT's simple pyramid (hierarchical: the FPN's, set by the engine).
        backbone_kwargs: further constructor arguments (e.g. smaller sizes for tests).
    """
    from mixmim.backbone_names import canonical_backbone_name
    from mixmim.backbones.registry import BACKBONE_SPECS

    backbone = canonical_backbone_name(backbone)
    spec = BACKBONE_SPECS[backbone][1] if backbone in BACKBONE_SPECS else {}
    kwargs = dict(num_classes=0, img_size=img_size, drop_path_rate=drop_path, **backbone_kwargs)
    depths = kwargs.get("depths", spec.get("depths"))
    if depths is not None and len(depths) > 1:
        kwargs.setdefault("global_blocks", global_blocks(depths, attention))
    encoder = create_backbone(backbone, **kwargs)
    if len(encoder.stage_dims) == 1 and attention != "global":
        global_blocks((), attention)  # validates the name
        to_vitdet(encoder, img_size, attention)
    adapter = PyramidAdapter(encoder, out_channels=out_channels)
    log.info("detection adapter on %s at %d px: %s, levels %s", backbone, img_size, adapter.kind,
             {n: (adapter.out_channels[n], adapter.out_strides[n]) for n in adapter.out_features})
    return adapter
