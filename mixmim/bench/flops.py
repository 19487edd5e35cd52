"""FLOPs in the fvcore convention (the counter the official MixMIM README uses).

fvcore counts one multiply-add as one FLOP for matmuls, linear layers, convolutions and einsums, and
``5 x numel`` for an affine LayerNorm (``4 x`` without affine); element-wise ops, softmax and GELU are
free. torch's ``FlopCounterMode`` counts two FLOPs per multiply-add (and counts the attention matmuls
inside ``scaled_dot_product_attention``), so we halve its matmul/conv/attention counts and add
LayerNorm with fvcore's rule. Models are built on the ``meta`` device: no memory, no compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_aten = torch.ops.aten


def _layer_norm_flops(input_shape, normalized_shape, weight_shape=None, bias_shape=None, *args, **kwargs) -> int:
    """fvcore's ``norm_flop_counter``: 5 FLOPs per element with affine parameters, else 4.

    FlopCounterMode halves nothing here: the returned value is doubled to survive the global halving.
    """
    per_element = 5 if weight_shape is not None else 4
    return 2 * per_element * math.prod(input_shape)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """SDPA's fused CPU kernel, which ``FlopCounterMode`` (torch 2.14) has no formula for: the same count as
    its CUDA flash kernel (two FLOPs per multiply-add of QK^T and AV, halved with the rest)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_formulas() -> dict:
    formulas = {_aten.native_layer_norm: _layer_norm_flops}
    if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
        formulas[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_attention_flops
    return formulas


def count_flops(model: nn.Module, inputs: torch.Tensor | tuple, forward: Callable | None = None) -> float:
    """fvcore-convention FLOPs of one forward pass (for the whole batch in ``inputs``)."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    counter = FlopCounterMode(display=False, custom_mapping=_custom_formulas())
    with counter, torch.no_grad():
        (forward or model)(*inputs)
    return counter.get_total_flops() / 2


def backbone_flops(name: str, img_size: int | None = None, num_classes: int = 1000) -> float:
    """FLOPs per image of a registered backbone's classification forward, built on the meta device."""
    from mixmim.backbones import create_backbone

    with torch.device("meta"):
        model = create_backbone(name, num_classes=num_classes, **({"img_size": img_size} if img_size else {}))
        x = torch.empty(1, 3, model.img_size, model.img_size)
    return count_flops(model.eval(), x)


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters incl. frozen ones, trainable parameters). The fixed sin-cos position embeddings, buffers
    here and frozen parameters in the official code (``Backbone.official_frozen_params``), count as
    parameters, as in the official counts."""
    frozen = sum(getattr(m, name).numel() for m in model.modules() for name in getattr(m, "official_frozen_params", ()))
    total = sum(p.numel() for p in model.parameters()) + frozen
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)
