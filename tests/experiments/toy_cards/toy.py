"""A toy fifth method's card (tests/experiments/test_fifth_method.py): SimMIM's model under another name, with its
own label, loss kind, recipe, FLOP entries and test sizes. Not a package module: the test appends this folder to
``baselines.cards.__path__`` in a child process, so the suite's registry never sees it."""

from __future__ import annotations

from baselines.card import FlopEntry, MethodCard


def build(encoder, m, run_dir=None):
    from baselines.simmim import SimMIM

    return SimMIM(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit)


CARD = MethodCard(
    name="toy", label="Toy", order=4, loss="toy pixel loss",
    fields=frozenset({"mask_ratio", "mask_unit"}), build=build,
    recipe={"method.mask_ratio": 0.3, "method.mask_unit": 32, "pretrain.blr": 2e-4, "pretrain.lr_scale_base": 256,
            "pretrain.betas": (0.9, 0.98), "pretrain.weight_decay": 0.04, "pretrain.warmup_epochs": 7},
    family_recipe={"vit": {"model.drop_path": 0.05}},
    flops={"mixmim_base": FlopEntry(11.5), "mixmim_vit_base_patch16": FlopEntry(12.5)},
    test_settings={"method.mask_unit": 8},
)
