#!/usr/bin/env python
"""Count the FLOP tables of ``experiments/cost.py`` (``PRETRAIN_GFLOPS``, ``BACKBONE_GFLOPS``) and print them as
Python to paste there: ``python scripts/count_flops.py`` (minutes of CPU; no GPU needed).

Pre-training: each method with its source recipe (``baselines.reference.method_builder``) on the backbone, and
MixMIM on a plain ViT with 32-px cells (``method.mask_unit=32``, as its ViT experiments run it), counted by
``mixmim.bench.method_flops``; fine-tuning and probing: the backbone's classification forward
(``mixmim.bench.flops.backbone_flops``). ``tests/scripts/test_count_flops.py`` regenerates a part and compares.
"""

from __future__ import annotations

import argparse

PAIRS = [*((m, b) for b in ("mixmim_base", "mixmim_vit_base_patch16") for m in ("mixmim", "mae", "simmim", "beit")),
         ("mixmim", "mixmim_large"), ("mixmim", "mixmim_huge")]  # fmt: skip
BACKBONES = ("mixmim_base", "mixmim_large", "mixmim_huge", "mixmim_vit_base_patch16")


def flop_table_entries() -> list[tuple[str, str, list[str]]]:
    """``(method, backbone, overrides)`` of every ``PRETRAIN_GFLOPS`` entry."""
    return [(m, b, ["method.mask_unit=32"] if m == "mixmim" and b.startswith("mixmim_vit_") else []) for m, b in PAIRS]


def count_flop_table(entries: list[tuple[str, str, list[str]]] | None = None, backbones: tuple[str, ...] = BACKBONES,
                     ) -> tuple[dict[tuple[str, str], float], dict[str, float]]:  # fmt: skip
    """GFLOPs of ``entries`` (default: all) and of ``backbones``, rounded as the tables hold them."""
    from baselines.reference import method_builder
    from mixmim.bench import method_flops
    from mixmim.bench.flops import backbone_flops

    backbone_table = {bb: round(backbone_flops(bb) / 1e9, 2) for bb in backbones}
    pretrain = {}
    for method, bb, extra in flop_table_entries() if entries is None else entries:
        with method_builder(bb, 0, extra) as build:
            model, _ = build(method)  # (method, its run config)
            pretrain[(method, bb)] = round(method_flops(model, model.encoder.img_size) / 1e9, 2)
    return pretrain, backbone_table


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    pretrain, backbones = count_flop_table()
    print("PRETRAIN_GFLOPS: dict[tuple[str, str], float] = {")
    print("".join(f"    {key!r}: {value},\n" for key, value in pretrain.items()) + "}")
    print("BACKBONE_GFLOPS: dict[str, float] = {")
    print("".join(f"    {key!r}: {value},\n" for key, value in backbones.items()) + "}")


if __name__ == "__main__":
    main()
