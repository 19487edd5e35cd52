"""The paper's MixMIM-B ablations (300 pre-training epochs + fine-tuning each), one experiment per table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.definitions.recipes import IMAGENET_FINETUNE, IMAGENET_PRETRAIN, replaced, scaled
from experiments.spec import Experiment, make_run
from reports.spec import Column, TableSpec

# name -> (description, config key, values, setting name)
ABLATIONS: dict[str, tuple[str, str, Sequence[Any], str]] = {
    "ablation-mask-type": ("what fills the masked cells: the other image (mixing), [MASK], zero, noise",
                           "method.mask_type", ("mix", "mask_token", "zero", "noise"), "mask_type"),
    "ablation-dual-reconstruction": ("dual vs single reconstruction", "method.dual_reconstruction",
                                     (True, False), "dual_reconstruction"),
    "ablation-mask-strategy": ("random vs block masking at the 32-px mask unit", "method.mask_strategy",
                               ("random", "block"), "mask_strategy"),
    "ablation-mask-ratio": ("mask ratio 0.25 to 0.75", "method.mask_ratio", (0.25, 0.375, 0.5, 0.625, 0.75),
                            "mask_ratio"),
    "ablation-mix-embedding": ("mix embedding vs masked self-attention", "method.mix_embedding", (False, True),
                               "mix_embedding"),
}


def ablation(name: str, variant: str = "full") -> Experiment:
    description, key, values, setting = ABLATIONS[name]
    runs = []
    for value in values:
        overrides, bb = scaled({**IMAGENET_PRETRAIN, **IMAGENET_FINETUNE, "pretrain.epochs": 300, key: value},
                               variant, "mixmim_base")
        runs.append(make_run(name, "mixmim", bb, ("pretrain", "finetune"), setting={setting: value},
                             overrides=overrides, replaces=replaced(variant, key)))
    reference = f"mixmim_ablation_{setting}_{{setting.{setting}}}_top1"
    table = TableSpec(name=setting, title=f"MixMIM-B ablation: {description}", rows=(f"setting.{setting}",),
                      columns=(Column("finetune", "top1", "Top-1", reference=reference),
                               Column("pretrain", "loss", "Pre-train loss", digits=3)),
                      caption="MixMIM paper ablations (300 ep); paper values to be transcribed where missing.")
    return Experiment(name, f"MixMIM-B ablation: {description}", runs, [table], variant, sets=tuple(overrides))
