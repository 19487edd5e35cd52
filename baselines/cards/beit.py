"""BEiT (microsoft/unilm ``beit/``, arXiv 2106.08254): its card. The model is ``baselines/beit.py``, its
tokenizers ``baselines/tokenizers/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from baselines.card import FlopEntry, MethodCard

if TYPE_CHECKING:
    from mixmim.backbones.interface import Backbone
    from mixmim.config import MethodConfig
    from mixmim.pretrain.method import PretrainMethod

log = logging.getLogger(__name__)


def build(encoder: Backbone, m: MethodConfig, run_dir: Path | None = None) -> PretrainMethod:
    """BEiT with the tokenizer of ``m`` (the k-means codebook of ``run_dir``'s ``tokenizer`` stage, or the
    DALL-E encoder at ``m.tokenizer_path``); the head follows the tokenizer's vocabulary."""
    from baselines.beit import BEiT
    from baselines.tokenizers.stage import build_tokenizer

    tokenizer = build_tokenizer(m, run_dir)
    if tokenizer.vocab_size != m.vocab_size:
        log.warning("the %s tokenizer has %d tokens (method.vocab_size=%d); the head follows the tokenizer",
                    m.tokenizer, tokenizer.vocab_size, m.vocab_size)
    return BEiT(encoder, tokenizer, mask_ratio=m.mask_ratio, mask_unit=m.mask_unit, mask_strategy=m.mask_strategy)


CARD = MethodCard(
    name="beit", label="BEiT", order=3,
    loss="visual-token cross-entropy",  # BEiT classifies the masked patches into the tokenizer's visual tokens
    fields=frozenset({"mask_ratio", "mask_unit", "mask_strategy", "tokenizer", "tokenizer_path", "vocab_size"}),
    build=build,
    # microsoft/unilm beit/README.md "Pre-training BEiT-base on ImageNet-1k", run_beit_pretraining.py and the
    # paper's pre-training setup (Bao et al. 2106.08254); 800 epochs.
    recipe={
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
    # microsoft/unilm beit/get_started_for_image_classification.md (BEiT-base, self-supervised only: 100 epochs,
    # 128 x 8 GPUs = 1024) and run_class_finetuning.py.
    finetune={  # the own fine-tuning protocol; the values every script shares: registry._FINETUNE_COMMON
        "finetune.blr": 4e-3 * 256 / 1024,  # BEiT --lr 4e-3 absolute at 1024 (not batch-scaled there)
        "finetune.warmup_epochs": 20,  # BEiT --warmup_epochs 20
        "finetune.min_lr": 1e-6,  # BEiT run_class_finetuning.py --min_lr 1e-6
        "finetune.schedule": "beit_cosine",  # BEiT utils.cosine_scheduler: linspace warm-up from 0, half-cosine
        "finetune.warmup_lr": 0.0,  # cosine_scheduler's start_warmup_value stays 0 (--warmup_lr unused)
        "finetune.layer_decay": 0.65,  # BEiT --layer_decay 0.65
        "model.fc_norm": True,  # BEiT --use_mean_pooling (default True): mean, then fc_norm
    },
    finetune_family={
        "hierarchical": {  # the plain-ViT switches do not exist there: its head is final norm, then the mean
            "model.fc_norm": False, "model.train_pos_embed": False,
            "linprobe.features": "pooled",  # no cls token on the hierarchical backbone
        },
    },
    flops={"mixmim_base": FlopEntry(16.51), "mixmim_vit_base_patch16": FlopEntry(18.05)},  # scripts/count_flops.py
    test_settings={"method.vocab_size": 16},  # a 16-token codebook (the tests fit one)
)
