"""``mixmim-bench models``: every registered backbone with its parameters and FLOPs."""

from __future__ import annotations

import torch
from tabulate import tabulate

from mixmim.backbones import BACKBONE_SPECS, create_backbone
from mixmim.bench.flops import backbone_flops, param_counts


def models_rows(names: list[str] | None = None) -> list[dict]:
    """One row per backbone: params (all / trainable, 1000 classes) and fvcore-convention GFLOPs."""
    rows = []
    for name in names or list(BACKBONE_SPECS):
        with torch.device("meta"):
            model = create_backbone(name, num_classes=1000)
        total, trainable = param_counts(model)
        rows.append({"backbone": name, "img_size": model.img_size, "params": total, "trainable": trainable,
                     "GFLOPs": round(backbone_flops(name) / 1e9, 2)})
    return rows


def print_models(names: list[str] | None = None) -> str:
    table = tabulate(models_rows(names), headers="keys", tablefmt="github", intfmt=",")
    print(table)
    print("\nParams count the frozen sin-cos position embedding; FLOPs: one multiply-add = one FLOP (fvcore), "
          "attention matmuls and LayerNorm included, 1000-class head.")
    return table
