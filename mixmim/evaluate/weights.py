"""Which encoder weights an evaluation starts from (``cfg.init``), and building the backbone with them.

``cfg.init`` is one of:

- ``pretrain``: this run's pre-training result, ``<run_dir>/pretrain/encoder.pth`` (written by the engine:
  ``{"model": encoder state dict, "meta": ...}``);
- ``run:<base>``: the pre-training result of the run ``<base>-s<seed>`` beside this one (same experiment
  folder, same seed; :func:`mixmim.runs.rundir.sibling_encoder`);
- ``random``: no loading, the random-init control (seeded by ``cfg.seed``, so every stage of a run sees the
  same random encoder);
- a path to a checkpoint: an official MixMIM/MAE file (``{"model": ...}``, pre-training or fine-tuning, with
  its pickled ``args`` namespace), an engine training checkpoint (``encoder.*`` keys) or a bare state dict.
  Position embeddings and relative-position tables are interpolated to the model
  (:func:`mixmim.backbones.load_official_checkpoint`).

A classifier head in the file is dropped when its shape does not match the model (official fine-tuning does
the same) or when the model has no head (linear probe, kNN).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mixmim.backbones import Backbone, create_backbone, load_official_checkpoint, read_state_dict
from mixmim.backbones.options import backbone_options
from mixmim.config import RunConfig
from mixmim.engine.checkpoint import ENCODER
from mixmim.runs.rundir import SIBLING_INIT, sibling_encoder
from mixmim.weights.torchfile import CheckpointFileError

logger = logging.getLogger(__name__)

INIT_KEYWORDS = ("pretrain", "random")
HEAD_PREFIX = "head."  # the classifier's keys in official and suite checkpoints (timm's "classifier")


class InitWeightsError(ValueError):
    """``cfg.init`` names no usable checkpoint (missing, unreadable or another architecture); the message
    says which file and what is allowed."""


@dataclass(frozen=True)
class InitSource:
    """Where an evaluation's encoder weights come from: ``kind`` pretrain | run | random | path, and the file."""

    kind: str
    path: Path | None = None

    def describe(self) -> dict[str, Any]:
        """For ``result.json``: ``{"init": kind, "init_path": str | None}``."""
        return {"init": self.kind, "init_path": str(self.path) if self.path else None}


def resolve_init(init: str, run_dir: str | Path, seed: int = 0) -> InitSource:
    """Turn ``cfg.init`` into an :class:`InitSource`, checking that the file exists.

    Raises:
        InitWeightsError: ``init`` is empty, or its file does not exist (for ``pretrain``: the pre-training
            stage has not finished in ``run_dir``).
    """
    allowed = "'pretrain' (this run's pre-training), 'random' (no loading) or a path to a checkpoint file"
    if not init:
        raise InitWeightsError(f"init is empty; set init to {allowed}")
    if init == "random":
        return InitSource("random")
    if init.startswith(SIBLING_INIT):
        try:
            path = sibling_encoder(init, run_dir, seed)
        except ValueError as err:
            raise InitWeightsError(str(err)) from None
        if not path.is_file():
            raise InitWeightsError(f"init={init}: the pre-trained encoder {path} does not exist: run that run's "
                                   "'pretrain' stage first (same experiment, --output and seed)")
        return InitSource("run", path)
    if init == "pretrain":
        path = Path(run_dir) / "pretrain" / ENCODER
        if not path.is_file():
            raise InitWeightsError(
                f"init=pretrain, but the pre-trained encoder {path} does not exist: run the 'pretrain' stage "
                f"of this run first, or set init to {allowed}"
            )
        return InitSource("pretrain", path)
    path = Path(init).expanduser()
    if not path.is_file():
        raise InitWeightsError(f"init={init!r}: no such checkpoint file ({path.resolve()}); set init to {allowed}")
    return InitSource("path", path)


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
