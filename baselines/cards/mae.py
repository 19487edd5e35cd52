"""MAE (facebookresearch/mae, arXiv 2111.06377): its card. The model is ``baselines/mae.py``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from baselines.card import FlopEntry, MethodCard

if TYPE_CHECKING:
    from mixmim.backbones.interface import Backbone
    from mixmim.config import MethodConfig
    from mixmim.pretrain.method import PretrainMethod


def build(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from baselines.mae import MAE

    return MAE(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit, norm_pix_loss=m.norm_pix_loss,
               decoder_dim=m.decoder_dim, decoder_depth=m.decoder_depth, decoder_heads=m.decoder_heads)


CARD = MethodCard(
    name="mae", label="MAE", order=1,
    loss="pixel MSE",  # MAE regresses the (normalised) pixels of the masked patches with a mean squared error
    fields=frozenset({"mask_ratio", "mask_unit", "norm_pix_loss", "decoder_dim", "decoder_depth", "decoder_heads"}),
    build=build,
    # facebookresearch/mae PRETRAIN.md, main_pretrain.py, models_mae.py (He et al. 2111.06377); 800/1600 epochs.
    recipe={
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
    # facebookresearch/mae FINETUNE.md (ViT-B: 100 epochs, 32 x 4 accum x 8 GPUs = 1024), main_finetune.py,
    # models_vit.py; LINPROBE.md / main_linprobe.py for the probe.
    finetune={  # the own fine-tuning protocol; the values every script shares: registry._FINETUNE_COMMON
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
    finetune_family={
        "hierarchical": {  # the plain-ViT switches do not exist there: its head is final norm, then the mean
            "model.fc_norm": False, "model.train_pos_embed": False,
            "linprobe.features": "pooled",  # no cls token on the hierarchical backbone
        },
    },
    flops={"mixmim_base": FlopEntry(17.71), "mixmim_vit_base_patch16": FlopEntry(9.79)},  # scripts/count_flops.py
    test_settings={"method.decoder_dim": 32, "method.decoder_depth": 1, "method.decoder_heads": 2},
)
