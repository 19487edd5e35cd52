"""Settings of the ``coco`` experiment (paper recipe, detectron2) and its debug variant (built-in engine).

Both return dotted ``RunConfig`` keys for ``mixmim.config.apply_overrides``. The paper recipe is ViTDet's
Mask R-CNN COCO recipe (``detectron2/recipe.py``) with per-size values from ViTDet: layer decay by the
number of blocks (12: 0.7, 24: 0.8, 32: 0.9) and drop path by model size (base 0.1, large 0.4, huge 0.5).
The MixMIM paper's own detection hyper-parameters are not available offline; these are the documented
defaults until they are transcribed (``docs/coco.md``).

Reference numbers (Mask R-CNN, COCO val, AP box / AP mask): MixMIM-B 52.2 / 46.5, MixMIM-L 54.1 / 48.1
(MixMIM paper, arXiv 2205.13137), BEiT-L 53.3 / 47.1 (implied by the paper: MixMIM-L is +0.8 / +1.0 above it).
"""

from __future__ import annotations

from typing import Any

from mixmim.backbone_names import canonical_backbone_name
from mixmim.transfer.layout import DEFAULT_ATTENTION

PAPER_EPOCHS = (100, 50)
# backbone -> (layer decay, drop path); blocks: MixMIM-B/L 24, ViT-B 12, ViT-L 24, ViT-H 32.
PAPER_PER_BACKBONE: dict[str, tuple[float, float]] = {
    "mixmim_base": (0.8, 0.1),
    "mixmim_large": (0.8, 0.4),
    "mixmim_huge": (0.8, 0.5),
    "mixmim_vit_base_patch16": (0.7, 0.1),
    "mixmim_vit_large_patch16": (0.8, 0.4),
    "mixmim_vit_huge_patch14": (0.9, 0.5),
}
PAPER_NUMBERS = {  # (AP box, AP mask), with their source
    "mixmim_base": (52.2, 46.5, "MixMIM paper (arXiv 2205.13137), Mask R-CNN on COCO"),
    "mixmim_large": (54.1, 48.1, "MixMIM paper (arXiv 2205.13137), Mask R-CNN on COCO"),
    "beit_large": (53.3, 47.1, "implied by the MixMIM paper: MixMIM-L +0.8 AP box / +1.0 AP mask above BEiT-L"),
}


def coco_paper_overrides(backbone: str, epochs: int = 100) -> dict[str, Any]:
    """The paper recipe (detectron2 engine, ViTDet's Mask R-CNN at 1024 px, 64 images per step, lr 1e-4).

    ``coco.root`` is left to the user (``--set coco.root=/path/to/coco``).

    Raises:
        KeyError: a backbone without a recipe (the message lists those with one).
        ValueError: ``epochs`` other than 100 or 50.
    """
    backbone = canonical_backbone_name(backbone)
    if backbone not in PAPER_PER_BACKBONE:
        raise KeyError(f"no COCO recipe for backbone '{backbone}'; recipes exist for {sorted(PAPER_PER_BACKBONE)}")
    if epochs not in PAPER_EPOCHS:
        raise ValueError(f"the COCO recipes have {PAPER_EPOCHS} epochs, got {epochs}")
    layer_decay, drop_path = PAPER_PER_BACKBONE[backbone]
    return {
        "coco.engine": "detectron2",
        "coco.epochs": epochs,
        "coco.max_steps": 0,
        "coco.batch_size": 64,
        "coco.blr": 1e-4,
        "coco.lr": 0.0,
        "coco.weight_decay": 0.1,
        "coco.warmup_steps": 250,
        "coco.layer_decay": layer_decay,
        "coco.drop_path": drop_path,
        "coco.img_size": 1024,
        "coco.attention": DEFAULT_ATTENTION,
        "coco.heads": "standard",
        "coco.precision": "auto",
        "coco.score_thresh": 0.05,  # ViTDet's (detectron2's default)
        "coco.lsj": True,
    }


DEBUG_SCORE_THRESH = 0.001  # 36 steps of compact heads never score above the engines' 0.05: nothing to evaluate


def coco_debug_overrides() -> dict[str, Any]:
    """The debug variant: built-in engine and dataset (generated, 48 train / 16 val images of 64 px), compact
    heads, 3 epochs of 4 images per step (36 steps), test score threshold 0.001 (so that the few steps' low
    scores are evaluated) and no large-scale jitter on detectron2 (flip + resize, as the built-in engine: 36
    steps of LSJ at 64 px learn nothing measurable), so both engines measure AP > 0; well under a minute per
    stage on a CPU with a small backbone."""
    return {
        "coco.engine": "torchvision",
        "coco.root": "",
        "coco.epochs": 3,
        "coco.max_steps": 0,
        "coco.batch_size": 4,
        "coco.blr": 0.0,
        "coco.lr": 1e-3,
        "coco.weight_decay": 0.05,
        "coco.warmup_steps": 2,
        "coco.layer_decay": 0.9,
        "coco.drop_path": 0.0,
        "coco.img_size": 64,
        "coco.attention": DEFAULT_ATTENTION,
        "coco.heads": "compact",
        "coco.precision": "fp32",
        "coco.score_thresh": DEBUG_SCORE_THRESH,
        "coco.lsj": False,
    }
