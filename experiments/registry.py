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


# The experiments with a choice of fine-tuning protocol (``--finetune-protocol shared | own``).
FINETUNE_PROTOCOL = ("fixed-encoder",)


def get_experiment(name: str, variant: str = "full", finetune_protocol: str = "shared") -> Experiment:
    """Build experiment ``name`` in ``variant`` (``full`` | ``debug`` | ``small``) with ``finetune_protocol``
    (``shared``: one fine-tuning recipe for every method; ``own``: each method's official one, fixed-encoder only).

    Raises:
        KeyError: unknown name, listing the registered ones; or a variant or protocol the experiment does not have.
    """
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment '{name}'; registered: {', '.join(EXPERIMENTS)}")
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant '{variant}'; choose one of {VARIANTS}")
    if variant == "small" and name not in SMALL_VARIANT:
        raise KeyError(f"experiment '{name}' has no small variant; those that do: {', '.join(SMALL_VARIANT)}")
    if finetune_protocol == "shared":
        return EXPERIMENTS[name](variant)
    if name not in FINETUNE_PROTOCOL:
        raise KeyError(f"experiment '{name}' has no --finetune-protocol {finetune_protocol}; those that do: "
                       f"{', '.join(FINETUNE_PROTOCOL)}")
    return fixed_encoder(variant, finetune_protocol)
