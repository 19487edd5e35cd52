"""What ``mixmim-bench list`` prints, without building an experiment: name -> description and run counts.

Building every experiment (both variants, every config) took 15 s on the 2-core machine and loaded the model
stack; this table answers at once. ``tests/experiments/test_catalog.py`` builds every experiment in both
variants and checks that this table matches ``experiments.registry.EXPERIMENTS`` (names, order, descriptions,
run counts), so it cannot drift from the definitions. The grids over every method count the method cards
(``baselines.registry.CARDS``, torch-free), so a new method changes no number here.
"""

from __future__ import annotations

from typing import NamedTuple

from baselines.registry import CARDS


class ExperimentInfo(NamedTuple):
    description: str
    runs: int  # in the full variant
    debug_runs: int


_METHODS = len(CARDS)  # smoke: one run per method and the random-init control; fixed-encoder: per method x 2 encoders
_LABELS = ", ".join(card.label for card in CARDS.values())

CATALOG: dict[str, ExperimentInfo] = {
    "smoke": ExperimentInfo("all methods + random init on the built-in data (CPU, minutes)", _METHODS + 1,
                            _METHODS + 1),
    "imagenet-main": ExperimentInfo("MixMIM-B/L/H x {300, 600} pre-training epochs + 100-epoch fine-tune", 6, 6),
    "fixed-encoder": ExperimentInfo(f"{_LABELS} on MixMIM-B and ViT-B, equal schedule", 2 * _METHODS, 2 * _METHODS),
    "ablation-epochs": ExperimentInfo("MixMIM-B pre-training length (100-900 epochs)", 4, 4),
    "ablation-mask-type": ExperimentInfo("MixMIM-B ablation: what fills the masked cells: the other image (mixing), "
                                         "[MASK], zero, noise", 4, 4),
    "ablation-dual-reconstruction": ExperimentInfo("MixMIM-B ablation: dual vs single reconstruction", 2, 2),
    "ablation-mask-strategy": ExperimentInfo("MixMIM-B ablation: random vs block masking at the 32-px mask unit",
                                             2, 2),
    "ablation-mask-ratio": ExperimentInfo("MixMIM-B ablation: mask ratio 0.25 to 0.75", 5, 5),
    "ablation-mix-embedding": ExperimentInfo("MixMIM-B ablation: mix embedding vs masked self-attention", 2, 2),
    "transfer-classification": ExperimentInfo("fine-tune on iNaturalist 2018/2019 and Places205/365", 4, 4),
    "coco": ExperimentInfo("Mask R-CNN transfer (detectron2; debug: built-in torchvision engine)", 5, 5),
}
