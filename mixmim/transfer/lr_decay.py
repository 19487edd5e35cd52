"""Layer-wise lr decay for detectors built on the adapter (ViTDet's ``get_vit_lr_decay_rate``, generalised).

A parameter of the backbone (any name containing the adapter's ``encoder.`` module) gets the backbone's own
``layer_id`` (MixMIM: embeddings 0, block ``j`` of stage ``i`` at ``sum(depths[:i]) + j + 1``, patch merging
after its stage's last block); everything else (stage norms, simple pyramid, FPN, RPN, ROI heads) is new and
gets ``num_layers + 1``. The lr factor is ``layer_decay ** (num_layers + 1 - layer_id)``: 1 for new layers,
``layer_decay ** (num_layers + 1)`` for the patch embedding. As in ViTDet there is no head quirk here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mixmim.backbones import Backbone, create_backbone
from mixmim.engine.optim import layer_decay_param_groups

ENCODER_MARKER = "encoder."


def encoder_param_name(name: str) -> str | None:
    """The backbone's own name of a detector parameter (``backbone.body.encoder.layers.0...`` ->
    ``layers.0...``), or None when the parameter is not in the backbone."""
    if name.startswith(ENCODER_MARKER):
        return name[len(ENCODER_MARKER):]
    idx = name.find("." + ENCODER_MARKER)
    return None if idx < 0 else name[idx + 1 + len(ENCODER_MARKER):]


def detection_layer_id(name: str, encoder: Backbone) -> int:
    """Layer id in ``[0, num_layers + 1]`` of a detector parameter (see the module docstring)."""
    inner = encoder_param_name(name)
    return encoder.num_layers + 1 if inner is None else encoder.layer_id(inner)


def detection_lr_factor(name: str, encoder: Backbone, layer_decay: float) -> float:
    """``layer_decay ** (num_layers + 1 - layer_id)`` of a detector parameter."""
    return layer_decay ** (encoder.num_layers + 1 - detection_layer_id(name, encoder))


def detection_param_groups(model: nn.Module, encoder: Backbone, weight_decay: float,
                           layer_decay: float) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise lr decay (``lr_scale``) for a whole detector; no weight decay for 1-D
    parameters (norms, biases) and the backbone's ``no_weight_decay()`` (position embeddings, bias tables)."""
    return layer_decay_param_groups(
        model, weight_decay, layer_decay, official_head_decay=False, is_head=_no_head,
        layer_id=functools.partial(detection_layer_id, encoder=encoder), num_layers=encoder.num_layers,
        official_quirks=False)  # no decay on relative-position tables either (ViTDet's Swin recipe)


def _no_head(name: str) -> bool:
    """A detector has no classification head: every id comes from :func:`detection_layer_id`."""
    return False


def encoder_lr_factor_func(backbone: str, layer_decay: float, **backbone_kwargs: Any) -> Callable[[str], float]:
    """``name -> lr factor`` for detectron2's ``get_default_optimizer_params(lr_factor_func=...)``, from a
    backbone *name* (LazyConfig files have no model yet): the layer ids come from a meta-device copy."""
    with torch.device("meta"):
        encoder = create_backbone(backbone, num_classes=0, **backbone_kwargs)
    return functools.partial(detection_lr_factor, encoder=encoder, layer_decay=layer_decay)
