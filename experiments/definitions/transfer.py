"""Transfer experiments: classification fine-tuning (iNaturalist, Places) and COCO detection."""

from __future__ import annotations

import os

from experiments.definitions.recipes import IMAGENET_FINETUNE, IMAGENET_PRETRAIN, METHOD_LABELS, replaced, scaled
from experiments.spec import Experiment, make_run
from reports.spec import Column, TableSpec

# dataset -> MAE-reference key stem (MAE README's transfer table; ViT-B row).
TRANSFER_DATASETS = {"inat2018": "inat2018", "inat2019": "inat2019", "places205": "places205",
                     "places365": "places365"}
TRANSFER_ROOT_ENV = "MIXMIM_TRANSFER_ROOT"


def transfer_classification(variant: str = "full") -> Experiment:
    """Fine-tune a pre-trained MixMIM-B (``--set init=PATH``) on each dataset's ImageFolder export.

    Each dataset is read from ``$MIXMIM_TRANSFER_ROOT/<dataset>/{train,val}`` (default ``data/transfer``).
    """
    root = os.environ.get(TRANSFER_ROOT_ENV, "data/transfer")
    runs = []
    for name in TRANSFER_DATASETS:
        overrides, bb = scaled({**IMAGENET_FINETUNE, "data.dataset": "folder", "data.root": f"{root}/{name}",
                                "launch.executor": "slurm", "launch.nodes": 2, "launch.gpus_per_node": 8},
                               variant, "mixmim_base")
        stages = ("pretrain", "finetune") if variant == "debug" else ("finetune",)
        runs.append(make_run("transfer-classification", "mixmim", bb, stages, setting={"dataset": name},
                             overrides=overrides, replaces=replaced(variant),
                             init="pretrain" if variant == "debug" else ""))
    table = TableSpec(name="transfer", title="Transfer: fine-tuning top-1", rows=("setting.dataset",),
                      columns=(Column("finetune", "top1", "Top-1"),),
                      caption="MAE's ViT-B numbers on the same datasets are in reports/references/baselines.yaml.")
    return Experiment("transfer-classification", "fine-tune on iNaturalist 2018/2019 and Places205/365",
                      runs, [table], variant, sets=tuple(overrides))


COCO_REFERENCES = {"MixMIM / MixMIM-B": ("mixmim_b_600ep_coco_ap_box", "mixmim_b_600ep_coco_ap_mask"),
                   "MixMIM / MixMIM-L": ("mixmim_l_600ep_coco_ap_box", "mixmim_l_600ep_coco_ap_mask")}


def coco(variant: str = "full") -> Experiment:
    """Mask R-CNN on COCO: MixMIM-B/L and the baselines (paper recipe, detectron2); the debug variant runs
    the built-in torchvision engine on the generated tiny dataset."""
    from mixmim.transfer import coco_debug_overrides, coco_paper_overrides

    runs = []
    grid = [("mixmim", "mixmim_base"), ("mixmim", "mixmim_large"), ("mae", "mixmim_base"),
            ("simmim", "mixmim_base"), ("beit", "mixmim_base")]
    for method, backbone in grid:
        # pre-training: the ImageNet schedule (600 epochs, batch 2048, AMP) for every method, its own optimiser
        overrides, bb = scaled({**IMAGENET_PRETRAIN, **coco_paper_overrides(backbone)}, variant, backbone)
        if variant == "debug":
            overrides.update(coco_debug_overrides())
        label = {"mixmim_base": "MixMIM-B", "mixmim_large": "MixMIM-L"}.get(backbone, backbone)
        runs.append(make_run("coco", method, bb, ("pretrain", "coco"), setting={"encoder": label},
                             overrides=overrides, replaces=replaced(variant)))
    box = {k: v[0] for k, v in COCO_REFERENCES.items()}
    mask = {k: v[1] for k, v in COCO_REFERENCES.items()}
    table = TableSpec(name="coco", title="COCO Mask R-CNN", rows=("method", "setting.encoder"), labels=METHOD_LABELS,
                      columns=(Column("coco", "ap_box", "AP box", reference=box),
                               Column("coco", "ap_mask", "AP mask", reference=mask)),
                      caption="Each cell names its detection engine; engines are never mixed in one column.")
    return Experiment("coco", "Mask R-CNN transfer (detectron2; debug: built-in torchvision engine)", runs,
                      [table], variant, sets=tuple(overrides))
