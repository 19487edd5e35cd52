"""SimMIM (microsoft/SimMIM, arXiv 2111.09886): its card. The model is ``baselines/simmim.py``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from baselines.card import FlopEntry, MethodCard

if TYPE_CHECKING:
    from mixmim.backbones.interface import Backbone
    from mixmim.config import MethodConfig
    from mixmim.pretrain.method import PretrainMethod


def build(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from baselines.simmim import SimMIM

    return SimMIM(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit)


CARD = MethodCard(
    name="simmim", label="SimMIM", order=2,
    loss="pixel L1",  # SimMIM: an L1 loss on the raw pixels of the masked cells
    fields=frozenset({"mask_ratio", "mask_unit"}),
    build=build,
    # microsoft/SimMIM configs/vit_base__800ep/simmim_pretrain__vit_base__img224__800ep.yaml, config.py,
    # main_simmim.py, data/data_simmim.py (Xie et al. 2111.09886); 800 epochs.
    recipe={
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
        "model.drop_path": 0.1,  # SimMIM ViT-B MODEL.DROP_PATH_RATE 0.1 (Swin: 0.0, family_recipe)
        "data.crop_min_scale": 0.67,  # SimMIM data_simmim.py RandomResizedCrop scale=(0.67, 1.)
        "data.crop_interpolation": "bilinear",  # SimMIM data_simmim.py: torchvision's default interpolation
    },
    family_recipe={
        "hierarchical": {
            "model.drop_path": 0.0,  # SimMIM configs/swin_base__800ep pre-training MODEL.DROP_PATH_RATE 0.0
        },
    },
    # microsoft/SimMIM configs/vit_base__800ep/simmim_finetune__vit_base__img224__800ep.yaml, config.py,
    # main_finetune.py, lr_scheduler.py, optimizer.py; 100 epochs at 128 x 16 GPUs = 2048 (lr 5e-3).
    finetune={  # the own fine-tuning protocol; the values every script shares: registry._FINETUNE_COMMON
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
    finetune_family={
        "hierarchical": {
            "finetune.layer_decay": 0.8,  # SimMIM configs/swin_base__800ep fine-tuning TRAIN.LAYER_DECAY 0.8
            "finetune.layer_rule": "swin",  # SimMIM optimizer.get_swin_layer
            "finetune.official_quirks": False,  # SimMIM Swin: relative-position tables skip weight decay
            "model.fc_norm": False,  # Swin: final norm, then average pooling
        },
    },
    flops={"mixmim_base": FlopEntry(16.51), "mixmim_vit_base_patch16": FlopEntry(17.70)},  # scripts/count_flops.py
    test_settings={"method.mask_unit": 8},  # 8-px cells: a 4x4 mask grid at 32 px
)
