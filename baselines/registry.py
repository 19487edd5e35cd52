"""Every pre-training method by name, read from the method cards (``baselines/cards/``, one module per method).

``CARDS`` maps a name to its :class:`~baselines.card.MethodCard` (discovered, in card order); ``METHODS`` to its
builder. ``build_method(cfg)`` makes the encoder from ``cfg.model`` and the method from ``cfg.method``;
``method_defaults(name)`` gives the source paper's / official repository's recipe as ``key=value`` overrides
(dotted ``RunConfig`` keys) that an experiment applies with ``mixmim.config.apply_overrides``; every value carries
a comment naming its source in the method's card. Importing this module declares the closed set of
``method.name`` (the cards and the ``random`` control) on the torch-free config; it loads no model.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baselines.card import MethodBuilder, MethodCard
from baselines.cards import discover
from mixmim.config import MethodConfig, RunConfig, register_choices

if TYPE_CHECKING:  # the models load when a method is built: method_defaults() stays torch-free (cheap CLI paths)
    from mixmim.pretrain.method import PretrainMethod

log = logging.getLogger(__name__)

CARDS: dict[str, MethodCard] = discover()
METHODS: dict[str, MethodBuilder] = {name: card.build for name, card in CARDS.items()}
# The random-initialisation control: a method.name that builds no method (experiments.spec.make_run).
CONTROL, CONTROL_LABEL = "random", "Random init"
METHOD_NAMES: tuple[str, ...] = (*CARDS, CONTROL)  # the closed set of method.name
register_choices("method.name", METHOD_NAMES)


def method_card(name: str) -> MethodCard:
    """The card of ``name``.

    Raises:
        KeyError: unknown method name (listing the registered ones).
    """
    if name not in CARDS:
        raise KeyError(f"unknown method '{name}'; registered: {', '.join(CARDS)}")
    return CARDS[name]


def method_labels() -> dict[str, str]:
    """name -> its name in tables, every method in card order and then the random-init control."""
    return {**{name: card.label for name, card in CARDS.items()}, CONTROL: CONTROL_LABEL}


def pretrain_losses() -> dict[str, str]:
    """name -> what its pre-training loss is (the review page's curves share an axis per loss kind)."""
    return {name: card.loss for name, card in CARDS.items()}


# --- Each method's own fine-tuning recipe (the ``own`` fine-tuning protocol; docs/methods.md) ----------------------
# Dotted ``finetune.*`` / ``linprobe.*`` / ``model.*`` overrides from each official fine-tuning script, for the B-size
# recipe on ImageNet-1k. As for pre-training, epochs and the batch are left to the experiment (the sources' values
# are in the comments); the lr follows the batch by each source's rule. ``model.*`` keys here change only the
# classification head and the position embedding's trainability: the encoder's architecture is fixed by the
# pre-training it loads. Each method's own values are its card's ``finetune`` and ``finetune_family``; these are the
# values every official script shares. Equality with the official engines: tests/baselines/test_official_recipes.py.
_FINETUNE_COMMON: dict[str, Any] = {
    # MixMIM/MAE main_finetune.py: lr = blr * eff_batch / 256; BEiT's absolute lr as a blr at 256 and SimMIM's / 512:
    # their cards (baselines/cards/beit.py, simmim.py)
    "finetune.lr_scale_base": 256,
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


def method_finetune_defaults(name: str, backbone: str | None = None) -> dict[str, Any]:
    """The official fine-tuning (and, for MAE, linear-probe) recipe of ``name`` as dotted overrides; with a
    ``backbone``, its family's values where the official recipe differs by family (SimMIM's Swin).

    Raises:
        KeyError: unknown method name (listing the registered ones).
    """
    card = method_card(name)
    family = card.finetune_family.get(backbone_family(backbone), {}) if backbone else {}
    return {**_FINETUNE_COMMON, **card.finetune, **family}


def backbone_family(backbone: str) -> str:
    """``vit`` for the plain ViTs (``mixmim_vit_*``), ``hierarchical`` for the others."""
    return "vit" if backbone.removeprefix("mixmim_").startswith("vit_") else "hierarchical"


def method_defaults(name: str, backbone: str | None = None) -> dict[str, Any]:
    """The source recipe of ``name`` as dotted ``RunConfig`` overrides, including ``method.name``; with a
    ``backbone``, its family's values where the official recipe differs by family (SimMIM's Swin)."""
    card = method_card(name)
    family = card.family_recipe.get(backbone_family(backbone), {}) if backbone else {}
    return {"method.name": name, **card.recipe, **family}


def _warn_ignored_fields(m: MethodConfig) -> None:
    """Log the MethodConfig fields changed from their defaults that ``m.name`` does not read."""
    default = MethodConfig()
    ignored = [f.name for f in fields(MethodConfig) if f.name != "name" and f.name not in CARDS[m.name].fields
               and getattr(m, f.name) != getattr(default, f.name)]
    if ignored:
        log.info("method %s ignores method.%s", m.name, ", method.".join(ignored))


def build_method(cfg: RunConfig, run_dir: str | Path | None = None) -> PretrainMethod:
    """The encoder of ``cfg.model`` (no head) inside the method of ``cfg.method``, its generator seeded with
    ``cfg.seed``. ``run_dir`` is where a tokenizer method (BEiT) finds the k-means codebook of the ``tokenizer`` stage.

    The initial weights are a function of ``cfg.seed`` alone: they are drawn from a global generator seeded
    with it inside ``torch.random.fork_rng``, which leaves the caller's generator as it was (torch seeds its
    global generator at random at start-up, so an unseeded build differed from process to process).

    Raises:
        KeyError: unknown method name (listing the registered ones).
    """
    import torch

    from mixmim.backbones import create_backbone
    from mixmim.backbones.options import backbone_options

    card = method_card(cfg.method.name)
    _warn_ignored_fields(cfg.method)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = create_backbone(cfg.model.backbone, num_classes=0, img_size=cfg.model.img_size,
                                  drop_path_rate=cfg.model.drop_path, **backbone_options(cfg.model))
        encoder.set_grad_checkpointing(cfg.model.grad_checkpointing)
        method = card.build(encoder, cfg.method, Path(run_dir) if run_dir is not None else None)
    method.reseed(cfg.seed)
    return method
