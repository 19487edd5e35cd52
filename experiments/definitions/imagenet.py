"""ImageNet experiments: the main table, every method on a fixed encoder, and pre-training length."""

from __future__ import annotations

from typing import Any

from baselines.registry import CARDS
from experiments.definitions.recipes import (
    BACKBONE_LABELS,
    DEBUG,
    IMAGENET_FINETUNE,
    IMAGENET_LINPROBE,
    IMAGENET_PRETRAIN,
    METHOD_LABELS,
    MIXMIM_FINETUNE_KEYS,
    SHARED_FINETUNE_REASON,
    replaced,
    scaled,
    variant_tables,
)
from experiments.spec import Experiment, make_run
from mixmim.config import RunConfig
from mixmim.runs.rundir import SIBLING_INIT
from reports.spec import Column, TableSpec
from reports.verdicts import Finding

MAIN_REFERENCES = {"MixMIM-B / 600": "mixmim_b_600ep_top1", "MixMIM-L / 600": "mixmim_l_600ep_top1",
                   "MixMIM-B / 300": "mixmim_b_300ep_top1"}


def imagenet_main(variant: str = "full") -> Experiment:
    """MixMIM-B/L/H, 300 and 600 pre-training epochs, then 100-epoch fine-tuning (official recipe)."""
    runs = []
    for backbone in ("mixmim_base", "mixmim_large", "mixmim_huge"):
        for epochs in (300, 600):
            overrides, bb = scaled({**IMAGENET_PRETRAIN, **IMAGENET_FINETUNE, "pretrain.epochs": epochs}, variant,
                                   backbone)
            runs.append(make_run("imagenet-main", "mixmim", bb, ("pretrain", "finetune"),
                                 setting={"pretrain_epochs": epochs, "size": BACKBONE_LABELS[backbone]},
                                 overrides=overrides, replaces=replaced(variant)))
    table = TableSpec(
        name="main", title="ImageNet-1K fine-tuning top-1 (MixMIM, official recipe)",
        rows=("setting.size", "setting.pretrain_epochs"),
        columns=(Column("finetune", "top1", "Top-1", reference=MAIN_REFERENCES), Column("finetune", "top5", "Top-5")),
        caption="Paper: official README (600 ep); 300 ep: mmpretrain model zoo.")
    return Experiment("imagenet-main", "MixMIM-B/L/H x {300, 600} pre-training epochs + 100-epoch fine-tune",
                      runs, [table], variant, sets=tuple(overrides))


# The order of the methods' ImageNet-1K fine-tuning top-1 as the MixMIM paper compares them (each method's
# published number, reports/references/*.yaml): MixMIM-B 85.1 (600 ep) > SimMIM ViT-B 83.8 (800 ep) > MAE ViT-B
# 83.6 (1600 ep) > BEiT ViT-B 83.2 (800 ep). Published with different schedules and encoders; checked here with
# equal ones.
PAPER_ORDER = ("MixMIM", "SimMIM", "MAE", "BEiT")
PAPER_ORDER_SOURCE = ("MixMIM paper (arXiv 2205.13137) ImageNet-1K comparison: MixMIM-B 85.1, SimMIM 83.8, MAE 83.6, "
                      "BEiT 83.2 fine-tuning top-1 (official README; SimMIM, MAE, BEiT papers)")


# The fine-tuning protocols of fixed-encoder (``--finetune-protocol``): ``shared`` fine-tunes every method with
# MixMIM's recipe (IMAGENET_FINETUNE); ``own`` fine-tunes each with its official recipe
# (baselines.method_finetune_defaults: the card's finetune over registry._FINETUNE_COMMON), keeping only the budget
# shared (OWN_SETS), from the encoder the shared protocol's run of the same method, encoder and seed pre-trained
# (init=run:<that run>): one pre-training serves both.
FINETUNE_PROTOCOLS = ("shared", "own")
OWN_SETS = ("finetune.epochs", "finetune.batch_size", "finetune.precision")
FIXED_ENCODER_STAGES = ("pretrain", "linprobe", "finetune")
OWN_STAGES = ("linprobe", "finetune")
PROTOCOL_TITLES = {"shared": "shared fine-tuning protocol: MixMIM's recipe for every method",
                   "own": "own fine-tuning protocol: each method's official recipe"}
PROTOCOL_CAPTIONS = {
    "shared": "Same backbone classes, epochs, batch and fine-tuning recipe (MixMIM's); each method's own pre-training "
              "recipe (blr and its base, betas, warm-up, weight decay, mask).",
    "own": "The shared protocol's pre-training (init=run:<its run>), then each method's official fine-tuning recipe "
           "(its card's finetune in baselines/cards/, over baselines/registry.py _FINETUNE_COMMON: lr rule, warm-up, "
           "schedule, layer decay, clipping, head; MAE: trained pos_embed and its cls-token probe with its crop); "
           "epochs, batch and precision shared.",
}


def fixed_encoder_description() -> str:
    """``MixMIM, MAE, SimMIM, BEiT on MixMIM-B and ViT-B, equal schedule``: every registered method by label."""
    return f"{', '.join(card.label for card in CARDS.values())} on MixMIM-B and ViT-B, equal schedule"


def fixed_encoder(variant: str = "full", protocol: str = "shared") -> Experiment:
    """Every method on the same backbones with the same schedule (300 pre-training epochs), fine-tuned by one
    ``protocol`` (:data:`FINETUNE_PROTOCOLS`).

    Raises:
        KeyError: an unknown protocol.
    """
    if protocol not in FINETUNE_PROTOCOLS:
        raise KeyError(f"unknown fine-tuning protocol '{protocol}'; choose one of {', '.join(FINETUNE_PROTOCOLS)}")
    runs = []
    for backbone in ("mixmim_base", "mixmim_vit_base_patch16"):
        for method in CARDS:  # every registered method, in card order
            overrides, bb = scaled({**IMAGENET_PRETRAIN, **IMAGENET_FINETUNE, **IMAGENET_LINPROBE,
                                    "pretrain.epochs": 300}, variant, backbone)
            replaces = replaced(variant)
            if backbone.startswith("mixmim_vit") and method == "mixmim":
                overrides.setdefault("method.mask_unit", 32)  # MixMIM's 32-px cells: 2x2 ViT patches
                replaces = (*replaces, "method.mask_unit")
            setting = {"encoder": BACKBONE_LABELS[backbone]}
            shared = make_run("fixed-encoder", method, bb, FIXED_ENCODER_STAGES, setting=setting,
                              overrides=overrides, replaces=replaces)
            runs.append(shared if protocol == "shared" else _own_run(shared, overrides, replaces, variant))
    sets = dict.fromkeys(key for cfg in runs for key in _declared(cfg, protocol, variant))
    description = fixed_encoder_description()  # the catalog's (shared)
    reasons = {}
    if protocol == "shared":
        reasons = dict.fromkeys((k for k in sets if k.startswith(("finetune.", "model.", "linprobe."))),
                                f"{SHARED_FINETUNE_REASON} (--finetune-protocol own: each method's official recipe)")
    else:
        description += f"; {PROTOCOL_TITLES[protocol]}"
    epochs = sorted({cfg.pretrain.epochs for cfg in runs})
    tables = variant_tables(_fixed_encoder_tables(protocol, epochs, variant), variant)
    return Experiment("fixed-encoder", description, runs, tables, variant, sets=tuple(sets), reasons=reasons)


def _own_run(shared: RunConfig, overrides: dict[str, Any], replaces: tuple[str, ...], variant: str) -> RunConfig:
    """The ``own`` protocol's run beside ``shared``: its probe and fine-tuning only, from ``shared``'s encoder,
    with the method's official fine-tuning recipe; the shared fine-tuning's keys other than :data:`OWN_SETS` are
    dropped (a debug variant keeps its tiny-schedule keys, declared)."""
    debug = set(DEBUG) if variant == "debug" else set()
    kept = {k: v for k, v in overrides.items() if not k.startswith("finetune.") or k in OWN_SETS or k in debug}
    base = shared.name.removesuffix(f"-s{shared.seed}")
    return make_run("fixed-encoder", shared.method.name, shared.model.backbone, OWN_STAGES,
                    setting={**shared.setting, "finetune": "own"}, overrides=kept,
                    replaces=(*replaces, *(debug & {k for k in kept if k.startswith("finetune.")})),
                    init=f"{SIBLING_INIT}{base}", own_finetune=True)


def _declared(cfg: RunConfig, protocol: str, variant: str) -> tuple[str, ...]:
    """The keys the experiment sets for every method in ``protocol`` (Experiment.sets): all its overrides in
    ``shared``; in ``own`` none of the method's fine-tuning recipe but the budget (and a debug variant's keys)."""
    overrides, _ = scaled({**IMAGENET_PRETRAIN, **IMAGENET_FINETUNE, **IMAGENET_LINPROBE, "pretrain.epochs": 300},
                          variant, cfg.model.backbone)
    if protocol == "shared":
        return (*overrides, *MIXMIM_FINETUNE_KEYS)
    debug = set(DEBUG) if variant == "debug" else set()
    return tuple(k for k in overrides if not k.startswith("finetune.") or k in OWN_SETS or k in debug)


def _fixed_encoder_tables(protocol: str, epochs: list[int], variant: str) -> list[TableSpec]:
    """The table and its paired differences to MAE, named and titled by the fine-tuning protocol they used.

    The title states no number of pre-training epochs (``--budget`` sets them after the definition); the caption
    gives the ``epochs`` the ``variant`` plans."""
    suffix = "" if protocol == "shared" else f"_{protocol}"
    columns = (Column("linprobe", "top1", "Linear probe"), Column("finetune", "top1", "Fine-tune"))
    title = f"Every method on the same encoder (same pre-training budget; {PROTOCOL_TITLES[protocol]})"
    planned = (f" Pre-training epochs planned by the {variant} variant: {' / '.join(map(str, epochs))}; --budget "
               "replaces them (each run's config.yaml holds its own).")
    # both protocols' runs share the experiment folder: each table reads its own (the shared runs set no key)
    filters = {"setting.finetune": None if protocol == "shared" else protocol}
    table = TableSpec(name=f"fixed_encoder{suffix}", title=title, rows=("setting.encoder", "method"),
                      labels=METHOD_LABELS, budget=protocol == "shared", columns=columns,  # own: no pre-training
                      caption=PROTOCOL_CAPTIONS[protocol] + planned, filters=filters)
    findings = tuple(Finding.ordering(f"on {encoder}: " + " > ".join(PAPER_ORDER), PAPER_ORDER_SOURCE,
                                      [f"{encoder} / {method}" for method in PAPER_ORDER])
                     for encoder in ("MixMIM-B", "ViT-B/16"))
    differences = TableSpec(
        name=f"fixed_encoder_differences{suffix}", kind="differences", title="Every method on the same encoder: "
        f"paired differences to MAE on that encoder ({PROTOCOL_TITLES[protocol]})", rows=("setting.encoder", "method"),
        labels=METHOD_LABELS, columns=columns, baseline={"method": "mae"}, findings=findings, filters=filters)
    return [table, differences]


def ablation_epochs(variant: str = "full") -> Experiment:
    """MixMIM-B pre-training length: 100 / 300 / 600 / 900 epochs, each + 100-epoch fine-tuning."""
    runs = []
    for epochs in (100, 300, 600, 900):
        overrides, bb = scaled({**IMAGENET_PRETRAIN, **IMAGENET_FINETUNE, "pretrain.epochs": epochs}, variant,
                               "mixmim_base")
        runs.append(make_run("ablation-epochs", "mixmim", bb, ("pretrain", "finetune"),
                             setting={"pretrain_epochs": epochs}, overrides=overrides, replaces=replaced(variant)))
    table = TableSpec(name="epochs", title="MixMIM-B: pre-training epochs", rows=("setting.pretrain_epochs",),
                      columns=(Column("finetune", "top1", "Top-1",
                                      reference={"300": "mixmim_b_300ep_top1", "600": "mixmim_b_600ep_top1"}),))
    return Experiment("ablation-epochs", "MixMIM-B pre-training length (100-900 epochs)", runs, [table], variant,
                      sets=tuple(overrides))
