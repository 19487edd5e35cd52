"""Every experiment by name: one explicit dict, one hop from name to the function that builds it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from experiments.definitions.ablations import ABLATIONS, ablation
from experiments.definitions.imagenet import ablation_epochs, fixed_encoder, imagenet_main
from experiments.definitions.smoke import smoke
from experiments.definitions.transfer import coco, transfer_classification
from experiments.spec import VARIANTS, Experiment

EXPERIMENTS: dict[str, Callable[[str], Experiment]] = {
    "smoke": smoke,
    "imagenet-main": imagenet_main,
    "fixed-encoder": fixed_encoder,
    "ablation-epochs": ablation_epochs,
    **{name: partial(ablation, name) for name in ABLATIONS},
    "transfer-classification": transfer_classification,
    "coco": coco,
}


# The experiments with a ``small`` variant (the small-scale protocol: ImageNet-100, 128 px, short schedules).
SMALL_VARIANT = ("fixed-encoder", *ABLATIONS)


def get_experiment(name: str, variant: str = "full") -> Experiment:
    """Build experiment ``name`` in ``variant`` (``full`` | ``debug`` | ``small``).

    Raises:
        KeyError: unknown name, listing the registered ones; or a variant the experiment does not have.
    """
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment '{name}'; registered: {', '.join(EXPERIMENTS)}")
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant '{variant}'; choose one of {VARIANTS}")
    if variant == "small" and name not in SMALL_VARIANT:
        raise KeyError(f"experiment '{name}' has no small variant; those that do: {', '.join(SMALL_VARIANT)}")
    return EXPERIMENTS[name](variant)
