"""Training checkpoints: atomic writes, what they hold, and how a run resumes from them.

A checkpoint is written to a temporary file in the same folder (its name unique to the writer), flushed,
fsync'ed and renamed over the target (:func:`mixmim.runs.rundir.atomic_write`, the writer of every run file, with
the umask's mode), so ``checkpoint-last.pth`` is always a complete file: a run killed mid-write leaves the
previous checkpoint and a stray ``.checkpoint-*.tmp`` (removed on resume by :func:`remove_partial_checkpoints`;
only the holder of the run's lock resumes, so no other writer's file is removed). A checkpoint that is
unreadable anyway (a disk that filled up, a copy that was cut) is skipped on resume: :func:`load_latest_checkpoint`
falls back to the newest intact ``checkpoint-<N>.pth`` and says which file was broken.

Contents of a training checkpoint (:func:`training_checkpoint`), all loadable with ``weights_only=True``:
``model`` (state dict of the unwrapped module), ``optimizer``, ``scaler``, ``position`` (:class:`TrainPosition`
as a dict), ``rng`` (one :func:`mixmim.engine.rng.capture_rng_state` per rank, rank order), ``sampler`` (seed,
epoch, start), ``counters`` (running totals the stage reports: losses, wall time, images, events), ``config``
(the stage's config as a plain dict) and ``format``.

Every load uses ``weights_only=True`` (:func:`mixmim.weights.torchfile.load_torch_file`, which allow-lists the
``argparse.Namespace`` that official MixMIM checkpoints pickle under ``args``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mixmim.runs.rundir import ENCODER_FILE, atomic_write
from mixmim.weights.torchfile import CheckpointFileError, load_torch_file

__all__ = [  # CheckpointFileError: what every load here raises for an unreadable file
    "ENCODER", "LAST", "CheckpointFileError", "TrainPosition", "atomic_torch_save", "encoder_state_dict",
    "epoch_checkpoint_name", "load_checkpoint", "load_encoder_state", "load_latest_checkpoint",
    "remove_partial_checkpoints", "restore_training_checkpoint", "resume_candidates", "training_checkpoint",
    "unwrap",
]

logger = logging.getLogger(__name__)

LAST = "checkpoint-last.pth"
ENCODER = ENCODER_FILE  # the pre-trained encoder, beside the training checkpoints
FORMAT_VERSION = 1


@dataclass
class TrainPosition:
    """Where training stands: ``epoch`` (0-based, current), ``step_in_epoch`` (micro-batches of that epoch
    already consumed), ``global_step`` (optimizer steps done)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def epoch_checkpoint_name(epochs_done: int) -> str:
    """``checkpoint-<epochs done>.pth``: the periodic checkpoint kept after ``epochs_done`` epochs."""
    return f"checkpoint-{epochs_done}.pth"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then rename over ``path``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def remove_partial_checkpoints(folder: str | Path) -> list[Path]:
    """Delete temporary files left by a write that was killed; return them."""
    stray = sorted(Path(folder).glob(".checkpoint-*.tmp"))
    for path in stray:
        path.unlink(missing_ok=True)
        logger.info("removed partial checkpoint %s", path)
    return stray


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this engine (``weights_only=True``).

    Raises:
        CheckpointFileError: the file is truncated or not a checkpoint (the message names it).
    """
    return load_torch_file(path, map_location=map_location)


def resume_candidates(folder: str | Path) -> list[Path]:
    """``checkpoint-last.pth`` then ``checkpoint-<N>.pth`` by decreasing ``N``: the files a stage resumes from."""
    folder = Path(folder)
    numbered = []
    for path in folder.glob("checkpoint-*.pth"):
        match = re.fullmatch(r"checkpoint-(\d+)\.pth", path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    last = [folder / LAST] if (folder / LAST).is_file() else []
    return last + [path for _, path in sorted(numbered, reverse=True)]


def load_latest_checkpoint(
    folder: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], Path] | None:
    """The newest intact checkpoint of a stage folder and its path, or None when the folder has none.

    An unreadable file (truncated, corrupt) is skipped with a warning that names it and the file used instead.

    Raises:
        CheckpointFileError: there are checkpoints but none is readable (the message lists them).
    """
    broken: list[str] = []
    for path in resume_candidates(folder):
        try:
            ckpt = load_checkpoint(path, map_location)
        except CheckpointFileError as error:
            logger.warning("%s", error)
            broken.append(path.name)
            continue
        if broken:
            logger.warning("checkpoint(s) %s in %s unreadable: resuming from %s instead", ", ".join(broken),
                           folder, path.name)  # fmt: skip
        return ckpt, path
    if broken:
        raise CheckpointFileError(
            f"no readable checkpoint in {folder} ({', '.join(broken)} are truncated or corrupt): delete them "
            "to start the stage over, or restore one from a copy"
        )
    return None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or ``torch.compile``) wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def training_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    position: TrainPosition,
    rng: list[dict[str, Any]],
    sampler: dict[str, int],
    counters: dict[str, float],
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a run needs to continue at the exact next batch (see the module docstring)."""
    return {
        "format": FORMAT_VERSION,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "position": asdict(position),
        "rng": rng,
        "sampler": dict(sampler),
        "counters": dict(counters),
        "config": config or {},
    }


def restore_training_checkpoint(
    ckpt: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> TrainPosition:
    """Load model, optimizer and scaler states from ``ckpt`` in place; return the saved position.

    RNG states are restored separately (:func:`mixmim.engine.rng.restore_rng_state` with ``ckpt['rng'][rank]``),
    at the moment the data loader is about to draw the next batch.
    """
    if ckpt.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint format {ckpt.get('format')!r} is not {FORMAT_VERSION}: written by another version (e.g. "
            "the built-in COCO engine before it trained with the shared Trainer); delete the stage folder's "
            "checkpoint-*.pth files to run the stage from the start"
        )
    unwrap(model).load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    return TrainPosition(**ckpt["position"])


def encoder_state_dict(model: nn.Module, prefix: str = "encoder.") -> dict[str, torch.Tensor]:
    """The ``prefix`` sub-state-dict of ``model`` with the prefix stripped (the backbone's own keys)."""
    state = unwrap(model).state_dict()
    return {k[len(prefix) :]: v.detach().cpu() for k, v in state.items() if k.startswith(prefix)}


def save_encoder(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``{'model': encoder state dict, 'meta': meta}`` atomically (the official checkpoint shape)."""
    state = encoder_state_dict(model)
    if not state:
        raise ValueError(f"{type(unwrap(model)).__name__} has no 'encoder.' parameters to export")
    return atomic_torch_save({"model": state, "meta": meta or {}}, path)


def load_encoder_state(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The backbone state dict in ``path``: this engine's ``encoder.pth``, a training checkpoint (its
    ``encoder.`` keys), an official ``{'model': ...}`` checkpoint (its ``args`` namespace is allow-listed),
    or a bare state dict.

    Args:
        trusted: load with ``weights_only=False`` (for files that pickle other objects). Only for files you trust.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=False) if trusted else load_torch_file(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    return state
