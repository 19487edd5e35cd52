#!/usr/bin/env python
"""Count the FLOP tables (``experiments.cost.PRETRAIN_GFLOPS``, read from each method card's ``flops``, and
``experiments.cost.BACKBONE_GFLOPS``) and print them as Python to paste there: ``python scripts/count_flops.py``
(minutes of CPU; no GPU needed).

Pre-training: every entry of every method card (``baselines/cards/<name>.py``: the backbones and the overrides
it was counted with, e.g. MixMIM on a plain ViT with 32-px cells, ``method.mask_unit=32``, as its ViT
experiments run it), the method built with its source recipe (``baselines.reference.method_builder``) and
counted by ``mixmim.bench.method_flops``; fine-tuning and probing: the backbone's classification forward
(``mixmim.bench.flops.backbone_flops``). ``tests/scripts/test_count_flops.py`` regenerates a part and compares.
"""

from __future__ import annotations

import argparse

BACKBONES = ("mixmim_base", "mixmim_large", "mixmim_huge", "mixmim_vit_base_patch16")


def flop_table_entries() -> list[tuple[str, str, list[str]]]:
    """``(method, backbone, overrides)`` of every FLOP entry of every method card."""
    from baselines.registry import CARDS

    return [(name, backbone, list(entry.overrides)) for name, card in CARDS.items()
            for backbone, entry in card.flops.items()]


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


def _extra(overrides: tuple[str, ...] | list[str]) -> str:
    return f", {tuple(overrides)!r}" if overrides else ""


def main() -> None:
    from baselines.registry import CARDS, method_card

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", help="count only this method's card (default: every card and the backbones)")
    parser.add_argument("--backbone", action="append", default=[],
                        help="with --method: count on this backbone (repeatable; default: the card's own entries), "
                             "e.g. for a new card: --backbone mixmim_base --backbone mixmim_vit_base_patch16")
    args = parser.parse_args()
    if args.backbone and not args.method:
        parser.error("--backbone counts one method's entries: pass --method NAME too")
    names = [method_card(args.method).name] if args.method else list(CARDS)
    entries = [e for e in flop_table_entries() if e[0] in names and not args.backbone]
    entries += [(args.method, bb, []) for bb in args.backbone if args.method]
    pretrain, backbones = count_flop_table(entries, () if args.method else BACKBONES)
    for name in names:
        lines = [f"    {bb!r}: FlopEntry({pretrain[(m, bb)]}{_extra(extra)}),\n"
                 for m, bb, extra in entries if m == name]
        print(f"# baselines/cards/{name}.py\nflops={{\n{''.join(lines)}}},")
    if backbones:
        print("BACKBONE_GFLOPS: dict[str, float] = {")
        print("".join(f"    {key!r}: {value},\n" for key, value in backbones.items()) + "}")


if __name__ == "__main__":
    main()
