"""Building an evaluation's backbone with the encoder weights ``cfg.init`` names.

Where the weights come from (``pretrain`` | ``run:<base>`` | ``random`` | a checkpoint path) is resolved and checked by
:func:`mixmim.weights.init_source.resolve_init`, the rule every stage and the launcher share. A checkpoint's
position embeddings and relative-position tables are interpolated to the model
(:func:`mixmim.weights.checkpoint.load_official_checkpoint`).

A classifier head in the file is dropped when its shape does not match the model (official fine-tuning does
the same) or when the model has no head (linear probe, kNN).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mixmim.backbones import Backbone, create_backbone
from mixmim.backbones.options import backbone_options
from mixmim.config import RunConfig
from mixmim.weights.checkpoint import load_official_checkpoint, read_state_dict
from mixmim.weights.init_source import InitSource, InitWeightsError, resolve_init
from mixmim.weights.torchfile import CheckpointFileError

logger = logging.getLogger(__name__)

HEAD_PREFIX = "head."  # the classifier's keys in official and suite checkpoints (timm's "classifier")


def read_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, loaded with ``weights_only=True``.

    Official MixMIM/MAE checkpoints pickle their ``argparse.Namespace`` arguments next to the weights; that
    class (and the paths it may hold) is allowed, nothing else (:mod:`mixmim.weights.torchfile`).

    Raises:
        InitWeightsError: the file cannot be read as a checkpoint (the message says why and what to pass).
    """
    try:
        return read_state_dict(path)
    except CheckpointFileError as err:
        raise InitWeightsError(f"init={path}: {err}") from None
    except ValueError as err:
        raise InitWeightsError(f"init={path}: {err}; pass a checkpoint that holds model weights") from None


def drop_unusable_head(state: dict[str, torch.Tensor], model: Backbone) -> dict[str, torch.Tensor]:
    """Remove ``head.*`` entries that ``model`` lacks or that have another shape (e.g. 1000 vs 10 classes)."""
    target = model.state_dict()
    kept = {}
    for key, value in state.items():
        if key.startswith(HEAD_PREFIX) and (key not in target or target[key].shape != value.shape):
            logger.info("dropping %s %s from the checkpoint (model: %s)", key, tuple(value.shape),
                        tuple(target[key].shape) if key in target else "no head")  # fmt: skip
            continue
        kept[key] = value
    return kept


def load_init_weights(model: Backbone, source: InitSource) -> None:
    """Load ``source`` into ``model`` in place (nothing for ``random``).

    Raises:
        InitWeightsError: the file is unreadable or does not fit the backbone (missing/unexpected keys).
    """
    if source.path is None:
        return
    state = drop_unusable_head(read_checkpoint_state(source.path), model)
    try:
        load_official_checkpoint(model, state)
    except RuntimeError as err:
        raise InitWeightsError(f"checkpoint {source.path} does not fit backbone: {err}") from err
    logger.info("loaded %s encoder weights from %s", source.kind, source.path)


def build_eval_backbone(
    cfg: RunConfig, run_dir: str | Path, num_classes: int, drop_path: float = 0.0
) -> tuple[Backbone, InitSource]:
    """``cfg.model.backbone`` with ``num_classes`` outputs (0: no head), initialised as ``cfg.init`` says.

    The init source is checked before the model is built, so a bad path fails at once. Seed the global
    generator first (``cfg.seed``) for a reproducible random init and head.

    Args:
        num_classes: classes of the head; 0 for a headless feature extractor.
        drop_path: stochastic-depth rate (fine-tuning: 0.1).
    """
    source = resolve_init(cfg.init, run_dir, cfg.seed)
    model = create_backbone(
        cfg.model.backbone, num_classes=num_classes, img_size=cfg.model.img_size, drop_path_rate=drop_path,
        **backbone_options(cfg.model),
    )
    model.set_grad_checkpointing(cfg.model.grad_checkpointing)
    load_init_weights(model, source)
    return model, source
