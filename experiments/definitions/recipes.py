"""The official ImageNet recipes as dotted overrides (official-mixmim.md, ``exp/base_600ep``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from baselines.registry import method_labels
from reports.spec import TableSpec

# Pre-training: 128/GPU x 16 GPUs = 2048, AMP (fp16 autocast + GradScaler, as torch.cuda.amp in the official
# code). The optimiser recipe is each method's own (baselines/registry.py; MixMIM's: blr 1.5e-4, so lr 1.2e-3,
# AdamW (0.9, 0.95), wd 0.05, 40 warm-up epochs, half-cosine to 0).
IMAGENET_PRETRAIN: dict[str, Any] = {
    "data.dataset": "folder", "data.num_workers": 10,
    "pretrain.epochs": 600, "pretrain.batch_size": 128,  # blr, betas, wd, warm-up: each method's own recipe
    "pretrain.precision": "fp16", "pretrain.checkpoint_every": 20,
    "launch.executor": "slurm", "launch.nodes": 2, "launch.gpus_per_node": 8, "launch.cpus_per_task": 10,
    "launch.mem_gb": 0, "launch.time_min": 72 * 60,
}
# Fine-tuning: effective batch 1024 (official 128 x 8 GPUs; here 64 x 16 on the same 2 nodes), blr 5e-4,
# layer decay 0.7 (official ids), drop path 0.1, RandAugment, mixup 0.8 / cutmix 1.0, smoothing 0.1, reprob 0.25.
IMAGENET_FINETUNE: dict[str, Any] = {
    "finetune.lr_scale_base": 256, "finetune.schedule": "cosine",  # MixMIM's lr rule and schedule (the defaults)
    "finetune.epochs": 100, "finetune.warmup_epochs": 5, "finetune.batch_size": 64, "finetune.blr": 5e-4,
    "finetune.layer_decay": 0.7, "finetune.drop_path": 0.1, "finetune.min_lr": 1e-6, "finetune.precision": "fp16",
}
# MixMIM's fine-tuning recipe beyond its budget and lr (the config's defaults: floor 1e-6, warm-up from 0, no
# clipping, the final norm then the mean, a fixed position embedding, the pooled probe with torchvision's crop).
# An experiment that fine-tunes every method with MixMIM's recipe (fixed-encoder's shared protocol, smoke) sets
# these for every method too: it declares them (Experiment.sets); the deviations list them against each method's own.
MIXMIM_FINETUNE_KEYS = ("finetune.min_lr", "finetune.warmup_lr", "finetune.clip_grad", "model.fc_norm",
                        "model.train_pos_embed", "linprobe.features", "linprobe.crop")
SHARED_FINETUNE_REASON = "one fine-tuning recipe (MixMIM's) for every method"
IMAGENET_LINPROBE: dict[str, Any] = {"linprobe.epochs": 90, "linprobe.batch_size": 1024, "linprobe.blr": 0.1}

# Debug variants: the same runs and stages on the built-in data with tiny schedules (CPU, < 1 minute).
DEBUG: dict[str, Any] = {
    "data.dataset": "digits", "data.root": "", "data.num_workers": 0, "data.max_train_images": 128,
    "model.img_size": 0,
    "method.mask_unit": 8,  # the 32-px debug backbones: a 4x4 mask grid
    "method.decoder_dim": 32, "method.decoder_depth": 1, "method.decoder_heads": 1, "method.vocab_size": 32,
    "pretrain.epochs": 1, "pretrain.warmup_epochs": 0, "pretrain.max_steps": 2, "pretrain.batch_size": 32,
    "pretrain.precision": "auto", "pretrain.lr": 1e-3,
    "finetune.epochs": 1, "finetune.warmup_epochs": 0, "finetune.max_steps": 2, "finetune.batch_size": 32,
    "finetune.precision": "auto", "finetune.mixup": 0.0, "finetune.cutmix": 0.0, "finetune.randaug": "",
    "finetune.reprob": 0.0,
    "linprobe.epochs": 1, "linprobe.warmup_epochs": 0, "linprobe.max_steps": 2, "linprobe.batch_size": 64,
    "launch.executor": "local", "launch.nodes": 1, "launch.gpus_per_node": 0,
}
# The keys of DEBUG that are part of a method's own recipe (decoder sizes, mask cell, warm-up, lr): a debug
# variant replaces them for every method, on purpose.
DEBUG_REPLACES = ("method.mask_unit", "method.decoder_dim", "method.decoder_depth", "method.decoder_heads",
                  "method.vocab_size", "pretrain.warmup_epochs", "pretrain.lr")
# The small-scale protocol (``--variant small``): what a lab can afford, one arm with its fine-tuning projected
# at most 8 A100 GPU-hours by ``show --cost``. ImageNet-100 (CMC's 100 classes, read from an ImageNet root: pass
# --set data.root=/datasets/imagenet), MixMIM-B/ViT-B at 128 px (a 4x4 grid of 32-px cells), 200 pre-training
# and 100 fine-tuning epochs, on one node of 8 GPUs (effective batch 1024 / 512, lr by each method's blr rule).
SMALL: dict[str, Any] = {
    "data.subset": "imagenet100", "model.img_size": 128,
    "pretrain.epochs": 200, "finetune.epochs": 100,
    "launch.nodes": 1, "launch.gpus_per_node": 8, "launch.time_min": 24 * 60,
}
SMALL_VARIANT_NOTE = ("Drift (small-scale protocol, --variant small): ImageNet-100 (CMC's 100 classes) instead of "
                      "ImageNet-1k, 128 px instead of 224, 200 pre-training and 100 fine-tuning epochs, effective "
                      "batch 1024 / 512 on 8 GPUs; the paper's numbers beside it are ImageNet-1k's.")
# Small backbones that stand in for the real ones in debug variants (same family, CPU-sized).
DEBUG_BACKBONE = {"mixmim_base": "mixmim_tiny_32", "mixmim_large": "mixmim_tiny_32", "mixmim_huge": "mixmim_tiny_32",
                  "mixmim_vit_base_patch16": "mixmim_vit_tiny_patch4_32",
                  "mixmim_vit_large_patch16": "mixmim_vit_tiny_patch4_32"}
BACKBONE_LABELS = {"mixmim_base": "MixMIM-B", "mixmim_large": "MixMIM-L", "mixmim_huge": "MixMIM-H",
                   "mixmim_tiny_32": "MixMIM-tiny (debug)", "mixmim_vit_base_patch16": "ViT-B/16",
                   "mixmim_vit_tiny_patch4_32": "ViT-tiny (debug)"}
METHOD_LABELS = method_labels()  # every method's card in order, then the random-init control


def scaled(overrides: dict[str, Any], variant: str, backbone: str) -> tuple[dict[str, Any], str]:
    """The overrides and backbone of a run in ``variant`` (debug: the small backbone and tiny schedules; small:
    ImageNet-100 at 128 px with shorter schedules)."""
    if variant == "small":
        return {**overrides, **SMALL}, backbone
    if variant != "debug":
        return dict(overrides), backbone
    small = DEBUG_BACKBONE.get(backbone, backbone)
    extra = {"method.mask_unit": 8} if small.startswith("mixmim_vit_tiny") else {}
    return {**overrides, **DEBUG, **extra}, small


def variant_tables(tables: list[TableSpec], variant: str) -> list[TableSpec]:
    """The tables of a run grid in ``variant``: the small variant's captions name what it changes."""
    if variant != "small":
        return tables
    return [dataclasses.replace(t, caption=f"{t.caption} {SMALL_VARIANT_NOTE}".strip()) for t in tables]


def replaced(variant: str, *keys: str) -> tuple[str, ...]:
    """The recipe keys a run in ``variant`` replaces: ``keys`` (the experiment's own) and, in debug, DEBUG's."""
    return (*keys, *DEBUG_REPLACES) if variant == "debug" else keys
