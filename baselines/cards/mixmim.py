"""MixMIM (Sense-X/MixMIM, arXiv 2205.13137): its card. The model is ``mixmim/pretrain/method.py``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from baselines.card import FlopEntry, MethodCard

if TYPE_CHECKING:
    from mixmim.backbones.interface import Backbone
    from mixmim.config import MethodConfig
    from mixmim.pretrain.method import PretrainMethod


def build(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    from mixmim.pretrain.method import MixMIM

    return MixMIM(encoder, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit, norm_pix_loss=m.norm_pix_loss,
                  decoder_dim=m.decoder_dim, decoder_depth=m.decoder_depth, decoder_heads=m.decoder_heads,
                  dual_reconstruction=m.dual_reconstruction, mix_embedding=m.mix_embedding,
                  mask_type=m.mask_type, mask_strategy=m.mask_strategy)


_SMALL_DECODER = {"method.decoder_dim": 32, "method.decoder_depth": 1, "method.decoder_heads": 2}

CARD = MethodCard(
    name="mixmim", label="MixMIM", order=0,
    loss="pixel MSE",  # MixMIM regresses the (normalised) pixels of both images with a mean squared error
    fields=frozenset({"mask_ratio", "mask_unit", "mask_strategy", "mask_type", "norm_pix_loss", "decoder_dim",
                      "decoder_depth", "decoder_heads", "dual_reconstruction", "mix_embedding"}),
    build=build,
    # Sense-X/MixMIM exp/base_600ep + models_mixmim.py (shared/reference/official-mixmim.md); 600 epochs.
    recipe={
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
    # Sense-X/MixMIM exp/base_600ep fine-tuning + main_finetune.py (shared/reference/official-mixmim.md); 100 epochs
    # at 128 x 8 GPUs = 1024.
    finetune={  # the own fine-tuning protocol; the values every script shares: registry._FINETUNE_COMMON
        "finetune.blr": 5e-4,  # MixMIM --blr 5e-4 (lr 2e-3 at 1024)
        "finetune.warmup_epochs": 5,  # MixMIM --warmup_epochs 5
        "finetune.min_lr": 1e-6,  # MixMIM main_finetune.py --min_lr 1e-6
        "finetune.schedule": "cosine",  # MixMIM util/lr_sched.adjust_learning_rate: per-iteration half-cosine
        "finetune.warmup_lr": 0.0,  # adjust_learning_rate warms up from 0
        "finetune.layer_decay": 0.7,  # MixMIM --layer_decay 0.7 (head and final norm at id L: the quirk)
    },
    flops={  # python scripts/count_flops.py
        "mixmim_base": FlopEntry(19.04),
        "mixmim_vit_base_patch16": FlopEntry(28.32, ("method.mask_unit=32",)),  # 32-px cells: 2x2 ViT patches
        "mixmim_large": FlopEntry(38.56),
        "mixmim_huge": FlopEntry(120.40),
    },
    test_settings=_SMALL_DECODER,
)
