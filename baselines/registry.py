"""Every pre-training method by name (one explicit dict) and each method's recipe from its source.

``build_method(cfg)`` makes the encoder from ``cfg.model`` and the method from ``cfg.method``;
``method_defaults(name)`` gives the source paper's / official repository's recipe as ``key=value``
overrides (dotted ``RunConfig`` keys) that an experiment applies with ``mixmim.config.apply_overrides``.
Every value there carries a comment naming its source. Pre-training *epochs* are left to the experiment
(a comparison fixes one budget for every method); the sources' values are noted in comments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixmim.config import MethodConfig, RunConfig, check_registry

if TYPE_CHECKING:  # the models load when a method is built: method_defaults() stays torch-free (cheap CLI paths)
    from mixmim.backbones.interface import Backbone
    from mixmim.pretrain.method import PretrainMethod

log = logging.getLogger(__name__)

MethodBuilder = Callable[["Backbone", MethodConfig, "Path | None"], "PretrainMethod"]


def _build_mixmim(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from mixmim.pretrain.method import MixMIM

    return MixMIM(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit, norm_pix_loss=m.norm_pix_loss,
                  decoder_dim=m.decoder_dim, decoder_depth=m.decoder_depth, decoder_heads=m.decoder_heads,
                  dual_reconstruction=m.dual_reconstruction, mix_embedding=m.mix_embedding,
                  mask_type=m.mask_type, mask_strategy=m.mask_strategy)


def _build_mae(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from baselines.mae import MAE

    return MAE(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit, norm_pix_loss=m.norm_pix_loss,
               decoder_dim=m.decoder_dim, decoder_depth=m.decoder_depth, decoder_heads=m.decoder_heads)


def _build_simmim(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from baselines.simmim import SimMIM

    return SimMIM(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit)


def _build_beit(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from baselines.beit import BEiT
    from baselines.tokenizers.stage import build_tokenizer

    tokenizer = build_tokenizer(m, run_dir)
    if tokenizer.vocab_size != m.vocab_size:
        log.warning("the %s tokenizer has %d tokens (method.vocab_size=%d); the head follows the tokenizer",
                    m.tokenizer, tokenizer.vocab_size, m.vocab_size)
    return BEiT(encoder, tokenizer, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit, mask_strategy=m.mask_strategy)


METHODS: dict[str, MethodBuilder] = {
    "mixmim": _build_mixmim,
    "mae": _build_mae,
    "simmim": _build_simmim,
    "beit": _build_beit,
}
check_registry("method.name", METHODS, extra=("random",))  # the random-init control builds no method

# The MethodConfig fields each method reads (others are ignored; build_method logs the changed ones it ignores:
# at INFO, since experiments set shared sizes such as method.decoder_dim for every method on purpose).
METHOD_FIELDS: dict[str, set[str]] = {
    "mixmim": {"mask_ratio", "mask_unit", "mask_strategy", "mask_type", "norm_pix_loss", "decoder_dim",
               "decoder_depth", "decoder_heads", "dual_reconstruction", "mix_embedding"},
    "mae": {"mask_ratio", "mask_unit", "norm_pix_loss", "decoder_dim", "decoder_depth", "decoder_heads"},
    "simmim": {"mask_ratio", "mask_unit"},
    "beit": {"mask_ratio", "mask_unit", "mask_strategy", "tokenizer", "tokenizer_path", "vocab_size"},
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    # Sense-X/MixMIM exp/base_600ep + models_mixmim.py (shared/reference/official-mixmim.md); 600 epochs.
    "mixmim": {
        "method.mask_ratio": 0.5,  # MixMIM: int(49 * 0.5) = 24 of 7x7 cells
        "method.mask_unit": 0,  # MixMIM: the final stride, 32 px at 224
        "method.mask_strategy": "random",  # MixMIM random_masking
        "method.norm_pix_loss": True,  # MixMIM --norm_pix_loss
        "method.decoder_dim": 512, "method.decoder_depth": 8, "method.decoder_heads": 16,  # MixMIM decoder
        "pretrain.blr": 1.5e-4,  # MixMIM exp/base_600ep --blr 1.5e-4
        "pretrain.lr_scale_base": 256,  # MixMIM: lr = blr * batch / 256
        "pretrain.betas": (0.9, 0.95),  # MixMIM main_pretrain.py AdamW betas
        "pretrain.weight_decay": 0.05,  # MixMIM --weight_decay 0.05
        "pretrain.warmup_epochs": 40,  # MixMIM --warmup_epochs 40
        "pretrain.min_lr": 0.0,  # MixMIM: half-cosine to 0
        "pretrain.clip_grad": 0.0,  # MixMIM: no clipping
        "pretrain.official_quirks": True,  # MixMIM: only 1-D params and biases skip weight decay
        "model.drop_path": 0.0,  # MixMIM pre-training: drop path 0
        "data.crop_min_scale": 0.2,  # MixMIM: RandomResizedCrop scale (0.2, 1)
    },
    # facebookresearch/mae PRETRAIN.md, main_pretrain.py, models_mae.py (He et al. 2111.06377); 800/1600 epochs.
    "mae": {
        "method.mask_ratio": 0.75,  # MAE --mask_ratio 0.75
        "method.mask_unit": 0,  # MAE: one patch (16 px on ViT-B/16); hierarchical: the final stride
        "method.norm_pix_loss": True,  # MAE PRETRAIN.md --norm_pix_loss
        "method.decoder_dim": 512, "method.decoder_depth": 8, "method.decoder_heads": 16,  # MAE dec512d8b
        "pretrain.blr": 1.5e-4,  # MAE PRETRAIN.md --blr 1.5e-4
        "pretrain.lr_scale_base": 256,  # MAE main_pretrain.py: lr = blr * eff_batch_size / 256
        "pretrain.betas": (0.9, 0.95),  # MAE main_pretrain.py AdamW betas=(0.9, 0.95)
        "pretrain.weight_decay": 0.05,  # MAE PRETRAIN.md --weight_decay 0.05
        "pretrain.warmup_epochs": 40,  # MAE PRETRAIN.md --warmup_epochs 40
        "pretrain.min_lr": 0.0,  # MAE main_pretrain.py --min_lr 0
        "pretrain.clip_grad": 0.0,  # MAE: no clipping
        "pretrain.official_quirks": True,  # MAE optim_factory.add_weight_decay: skip only 1-D params and biases
        "model.drop_path": 0.0,  # MAE pre-training: no drop path
        "data.crop_min_scale": 0.2,  # MAE main_pretrain.py RandomResizedCrop scale=(0.2, 1.0)
    },
    # microsoft/SimMIM configs/vit_base__800ep/simmim_pretrain__vit_base__img224__800ep.yaml, config.py,
    # main_simmim.py, data/data_simmim.py (Xie et al. 2111.09886); 800 epochs.
    "simmim": {
        "method.mask_ratio": 0.6,  # SimMIM DATA.MASK_RATIO 0.6
        "method.mask_unit": 32,  # SimMIM DATA.MASK_PATCH_SIZE 32 (px)
        "pretrain.blr": 1e-4,  # SimMIM ViT-B TRAIN.BASE_LR 1e-4
        "pretrain.lr_scale_base": 512,  # SimMIM main_simmim.py: lr = BASE_LR * batch / 512
        "pretrain.betas": (0.9, 0.999),  # SimMIM config.py TRAIN.OPTIMIZER.BETAS
        "pretrain.weight_decay": 0.05,  # SimMIM TRAIN.WEIGHT_DECAY 0.05
        "pretrain.warmup_epochs": 10,  # SimMIM ViT-B TRAIN.WARMUP_EPOCHS 10
        "pretrain.schedule": "multistep",  # SimMIM TRAIN.LR_SCHEDULER.NAME multistep (lr_scheduler.py)
        "pretrain.lr_milestones": (0.875,),  # SimMIM MULTISTEPS [700] of 800 epochs, as a fraction of the run
        "pretrain.lr_gamma": 0.1,  # SimMIM LR_SCHEDULER.GAMMA 0.1
        "pretrain.warmup_lr": 5e-7,  # SimMIM TRAIN.WARMUP_LR 5e-7 (x batch / 512: 2e-6 at 2048)
        "pretrain.min_lr": 0.0,  # SimMIM: the multi-step schedule has no floor
        "pretrain.scale_floor_lrs": True,  # SimMIM main_simmim.py: warm-up lr and floor x batch / 512 as the lr
        "pretrain.clip_grad": 5.0,  # SimMIM config.py TRAIN.CLIP_GRAD 5.0
        "pretrain.official_quirks": True,  # SimMIM optimizer.py: its skip list only (SimMIM.official_no_weight_decay)
        "model.drop_path": 0.1,  # SimMIM ViT-B MODEL.DROP_PATH_RATE 0.1 (Swin: 0.0, _FAMILY_DEFAULTS)
        "data.crop_min_scale": 0.67,  # SimMIM data_simmim.py RandomResizedCrop scale=(0.67, 1.)
        "data.crop_interpolation": "bilinear",  # SimMIM data_simmim.py: torchvision's default interpolation
    },
    # microsoft/unilm beit/README.md "Pre-training BEiT-base on ImageNet-1k", run_beit_pretraining.py and the
    # paper's pre-training setup (Bao et al. 2106.08254); 800 epochs.
    "beit": {
        "method.mask_ratio": 75 / 196,  # BEiT --num_mask_patches 75 of 14x14 ("about 40%")
        "method.mask_strategy": "block",  # BEiT blockwise masking (masking_generator.py)
        "method.mask_unit": 0,  # BEiT: one patch (16 px); hierarchical: the final stride
        "method.vocab_size": 8192,  # BEiT: the DALL-E dVAE vocabulary
        "pretrain.blr": 1.5e-3 * 256 / 2048,  # BEiT --lr 1.5e-3 at batch 128 x 16 = 2048 (absolute there)
        "pretrain.lr_scale_base": 256,
        "pretrain.betas": (0.9, 0.999),  # BEiT run_beit_pretraining.py --opt_betas default [0.9, 0.999]
        "pretrain.weight_decay": 0.05,  # BEiT --weight_decay 0.05
        "pretrain.warmup_epochs": 10,  # BEiT --warmup_epochs 10
        "pretrain.schedule": "beit_cosine",  # BEiT utils.cosine_scheduler: linspace warm-up from 0, half-cosine
        "pretrain.warmup_lr": 0.0,  # BEiT: cosine_scheduler's start_warmup_value is left at 0
        "pretrain.min_lr": 1e-5,  # BEiT run_beit_pretraining.py --min_lr 1e-5
        "pretrain.clip_grad": 3.0,  # BEiT --clip_grad 3.0
        "pretrain.official_quirks": True,  # BEiT: skip only no_weight_decay() = pos_embed, cls_token
        "model.drop_path": 0.1,  # BEiT --drop_path 0.1
        "data.crop_min_scale": 0.08,  # BEiT: RandomResizedCrop default scale (0.08, 1.0)
        "data.color_jitter": 0.4,  # BEiT datasets.py DataAugmentationForBEiT: ColorJitter(0.4, 0.4, 0.4)
    },
}
# Where a method's official recipe differs by backbone family (vit: mixmim_vit_*; hierarchical: the rest).
_FAMILY_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("simmim", "hierarchical"): {
        "model.drop_path": 0.0,  # SimMIM configs/swin_base__800ep pre-training MODEL.DROP_PATH_RATE 0.0
    },
}


# --- Each method's own fine-tuning recipe (the ``own`` fine-tuning protocol; docs/methods.md) ----------------------
# Dotted ``finetune.*`` / ``linprobe.*`` / ``model.*`` overrides from each official fine-tuning script, for the B-size
# recipe on ImageNet-1k. As for pre-training, epochs and the batch are left to the experiment (the sources' values
# are in the comments); the lr follows the batch by each source's rule. ``model.*`` keys here change only the
# classification head and the position embedding's trainability: the encoder's architecture is fixed by the
# pre-training it loads. Equality with the official engines: tests/baselines/test_official_recipes.py.
_FINETUNE_COMMON: dict[str, Any] = {
    "finetune.lr_scale_base": 256,  # MixMIM/MAE main_finetune.py: lr = blr * eff_batch / 256 (BEiT: see below)
    "finetune.weight_decay": 0.05,  # every script: --weight_decay 0.05 / TRAIN.WEIGHT_DECAY 0.05
    "finetune.drop_path": 0.1,  # every script: --drop_path 0.1 / MODEL.DROP_PATH_RATE 0.1 (B size)
    "finetune.smoothing": 0.1,  # --smoothing 0.1 (MAE, BEiT, MixMIM) / MODEL.LABEL_SMOOTHING 0.1 (SimMIM)
    "finetune.mixup": 0.8, "finetune.cutmix": 1.0,  # --mixup 0.8 --cutmix 1.0 / AUG.MIXUP 0.8, AUG.CUTMIX 1.0
    "finetune.randaug": "rand-m9-mstd0.5-inc1",  # --aa default / AUG.AUTO_AUGMENT, in every script
    "finetune.reprob": 0.25,  # --reprob 0.25 / AUG.REPROB 0.25, in every script
    "finetune.crop_min_scale": 0.08,  # timm create_transform's RandomResizedCrop scale (0.08, 1), in every script
    "finetune.clip_grad": 0.0,  # --clip_grad default None (MixMIM, MAE, BEiT); SimMIM: 5.0 below
    "finetune.scale_floor_lrs": False,  # warm-up start and floor absolute (MixMIM, MAE, BEiT); SimMIM: scaled
    "finetune.official_head_decay": True,  # each method's own layer-id table (ViT rule: head at L + 1)
    "finetune.official_quirks": True,  # MixMIM/MAE/BEiT: only 1-D params and no_weight_decay() skip decay
    "finetune.layer_rule": "backbone",  # the backbone's layer_id: MixMIM's, or MAE/BEiT's ViT rule
    "model.fc_norm": False,  # MixMIM: final norm, then the mean of the tokens
    "model.train_pos_embed": False,  # MixMIM: the sin-cos embedding stays fixed (as pre-trained)
}
_FINETUNE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Sense-X/MixMIM exp/base_600ep fine-tuning + main_finetune.py (shared/reference/official-mixmim.md); 100 epochs
    # at 128 x 8 GPUs = 1024.
    "mixmim": {
        "finetune.blr": 5e-4,  # MixMIM --blr 5e-4 (lr 2e-3 at 1024)
        "finetune.warmup_epochs": 5,  # MixMIM --warmup_epochs 5
        "finetune.min_lr": 1e-6,  # MixMIM main_finetune.py --min_lr 1e-6
        "finetune.schedule": "cosine",  # MixMIM util/lr_sched.adjust_learning_rate: per-iteration half-cosine
        "finetune.warmup_lr": 0.0,  # adjust_learning_rate warms up from 0
        "finetune.layer_decay": 0.7,  # MixMIM --layer_decay 0.7 (head and final norm at id L: the quirk)
    },
    # facebookresearch/mae FINETUNE.md (ViT-B: 100 epochs, 32 x 4 accum x 8 GPUs = 1024), main_finetune.py,
    # models_vit.py; LINPROBE.md / main_linprobe.py for the probe.
    "mae": {
        "finetune.blr": 5e-4,  # MAE FINETUNE.md ViT-B --blr 5e-4
        "finetune.warmup_epochs": 5,  # MAE main_finetune.py --warmup_epochs 5
        "finetune.min_lr": 1e-6,  # MAE main_finetune.py --min_lr 1e-6
        "finetune.schedule": "cosine",  # MAE util/lr_sched.adjust_learning_rate
        "finetune.warmup_lr": 0.0,  # adjust_learning_rate warms up from 0
        "finetune.layer_decay": 0.65,  # MAE FINETUNE.md ViT-B --layer_decay 0.65
        "model.fc_norm": True,  # MAE main_finetune.py global_pool=True: mean of patch tokens, then fc_norm
        "model.train_pos_embed": True,  # MAE models_vit.py: pos_embed is a Parameter, trained (layer 0, no decay)
        "linprobe.features": "cls_token",  # MAE main_linprobe.py global_pool=False: cls token after the final norm
        "linprobe.crop": "mae",  # MAE main_linprobe.py: util/crop.RandomResizedCrop(224, interpolation=3)
    },
    # microsoft/SimMIM configs/vit_base__800ep/simmim_finetune__vit_base__img224__800ep.yaml, config.py,
    # main_finetune.py, lr_scheduler.py, optimizer.py; 100 epochs at 128 x 16 GPUs = 2048 (lr 5e-3).
    "simmim": {
        "finetune.blr": 1.25e-3,  # SimMIM TRAIN.BASE_LR 1.25e-3
        "finetune.lr_scale_base": 512,  # SimMIM main_finetune.py: lr = BASE_LR * batch / 512
        "finetune.warmup_epochs": 20,  # SimMIM TRAIN.WARMUP_EPOCHS 20
        "finetune.schedule": "timm_cosine",  # SimMIM lr_scheduler.py: timm CosineLRScheduler, per step
        "finetune.warmup_lr": 2.5e-7,  # SimMIM TRAIN.WARMUP_LR 2.5e-7 (x batch / 512)
        "finetune.min_lr": 2.5e-7,  # SimMIM TRAIN.MIN_LR 2.5e-7 (x batch / 512)
        "finetune.scale_floor_lrs": True,  # SimMIM main_finetune.py scales WARMUP_LR and MIN_LR as the lr
        "finetune.clip_grad": 5.0,  # SimMIM config.py TRAIN.CLIP_GRAD 5.0
        "finetune.layer_decay": 0.65,  # SimMIM ViT-B TRAIN.LAYER_DECAY 0.65
        "model.fc_norm": True,  # SimMIM ViT-B MODEL.VIT.USE_MEAN_POOLING True: mean, then fc_norm
    },
    # microsoft/unilm beit/get_started_for_image_classification.md (BEiT-base, self-supervised only: 100 epochs,
    # 128 x 8 GPUs = 1024) and run_class_finetuning.py.
    "beit": {
        "finetune.blr": 4e-3 * 256 / 1024,  # BEiT --lr 4e-3 absolute at 1024 (not batch-scaled there)
        "finetune.warmup_epochs": 20,  # BEiT --warmup_epochs 20
        "finetune.min_lr": 1e-6,  # BEiT run_class_finetuning.py --min_lr 1e-6
        "finetune.schedule": "beit_cosine",  # BEiT utils.cosine_scheduler: linspace warm-up from 0, half-cosine
        "finetune.warmup_lr": 0.0,  # cosine_scheduler's start_warmup_value stays 0 (--warmup_lr unused)
        "finetune.layer_decay": 0.65,  # BEiT --layer_decay 0.65
        "model.fc_norm": True,  # BEiT --use_mean_pooling (default True): mean, then fc_norm
    },
}
# Where the official fine-tuning differs by backbone family (the plain-ViT switches do not exist on the
# hierarchical backbone, whose head is its own: final norm, then the mean, as Swin's).
_FINETUNE_FAMILY_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("simmim", "hierarchical"): {
        "finetune.layer_decay": 0.8,  # SimMIM configs/swin_base__800ep fine-tuning TRAIN.LAYER_DECAY 0.8
        "finetune.layer_rule": "swin",  # SimMIM optimizer.get_swin_layer
        "finetune.official_quirks": False,  # SimMIM Swin: relative-position tables skip weight decay
        "model.fc_norm": False,  # Swin: final norm, then average pooling
    },
    **{(method, "hierarchical"): {"model.fc_norm": False, "model.train_pos_embed": False,  # plain-ViT switches
                                  "linprobe.features": "pooled"}  # no cls token on the hierarchical backbone
       for method in ("mae", "beit")},
}


def method_finetune_defaults(name: str, backbone: str | None = None) -> dict[str, Any]:
    """The official fine-tuning (and, for MAE, linear-probe) recipe of ``name`` as dotted overrides; with a
    ``backbone``, its family's values where the official recipe differs by family (SimMIM's Swin).

    Raises:
        KeyError: unknown method name (listing the registered ones).
    """
    if name not in _FINETUNE_DEFAULTS:
        raise KeyError(f"unknown method '{name}'; registered: {', '.join(METHODS)}")
    family = _FINETUNE_FAMILY_DEFAULTS.get((name, backbone_family(backbone)), {}) if backbone else {}
    return {**_FINETUNE_COMMON, **_FINETUNE_DEFAULTS[name], **family}


def backbone_family(backbone: str) -> str:
    """``vit`` for the plain ViTs (``mixmim_vit_*``), ``hierarchical`` for the others."""
    return "vit" if backbone.removeprefix("mixmim_").startswith("vit_") else "hierarchical"


def method_defaults(name: str, backbone: str | None = None) -> dict[str, Any]:
    """The source recipe of ``name`` as dotted ``RunConfig`` overrides, including ``method.name``; with a
    ``backbone``, its family's values where the official recipe differs by family (SimMIM's Swin)."""
    if name not in _DEFAULTS:
        raise KeyError(f"unknown method '{name}'; registered: {', '.join(METHODS)}")
    family = _FAMILY_DEFAULTS.get((name, backbone_family(backbone)), {}) if backbone else {}
    return {"method.name": name, **_DEFAULTS[name], **family}


def _warn_ignored_fields(m: MethodConfig) -> None:
    """Log the MethodConfig fields changed from their defaults that ``m.name`` does not read."""
    default = MethodConfig()
    ignored = [f.name for f in fields(MethodConfig) if f.name != "name" and f.name not in METHOD_FIELDS[m.name]
               and getattr(m, f.name) != getattr(default, f.name)]
    if ignored:
        log.info("method %s ignores method.%s", m.name, ", method.".join(ignored))


def build_method(cfg: RunConfig, run_dir: str | Path | None = None) -> PretrainMethod:
    """The encoder of ``cfg.model`` (no head) inside the method of ``cfg.method``, its generator seeded with
    ``cfg.seed``. ``run_dir`` is where BEiT finds the k-means codebook of the ``tokenizer`` stage.

    The initial weights are a function of ``cfg.seed`` alone: they are drawn from a global generator seeded
    with it inside ``torch.random.fork_rng``, which leaves the caller's generator as it was (torch seeds its
    global generator at random at start-up, so an unseeded build differed from process to process).

    Raises:
        KeyError: unknown method name (listing the registered ones).
    """
    import torch

    from mixmim.backbones import create_backbone
    from mixmim.backbones.options import backbone_options

    name = cfg.method.name
    if name not in METHODS:
        raise KeyError(f"unknown method '{name}'; registered: {', '.join(METHODS)}")
    _warn_ignored_fields(cfg.method)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = create_backbone(cfg.model.backbone, num_classes=0, img_size=cfg.model.img_size,
                                  drop_path_rate=cfg.model.drop_path, **backbone_options(cfg.model))
        encoder.set_grad_checkpointing(cfg.model.grad_checkpointing)
        method = METHODS[name](encoder, cfg.method, Path(run_dir) if run_dir is not None else None)
    method.reseed(cfg.seed)
    return method
