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
