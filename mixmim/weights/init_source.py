"""Which encoder weights a stage starts from: ``cfg.init`` resolved to a file, checked before any work.

``cfg.init`` is one of:

- ``pretrain``: this run's pre-training result, ``<run_dir>/pretrain/encoder.pth`` (written by the
  pre-training stage: ``{"model": encoder state dict, "meta": ...}``);
- ``run:<base>``: the pre-training result of the run ``<base>-s<seed>`` beside this one (same experiment
  folder, same seed: :func:`mixmim.runs.rundir.sibling_encoder`; fixed-encoder's ``own`` fine-tuning protocol);
- ``random``: no loading, the random-init control (seeded by ``cfg.seed``, so every stage of a run sees the
  same random encoder);
- a path (``~`` expanded) to a checkpoint: an official MixMIM/MAE/SimMIM/BEiT file (``{"model": ...}``,
  pre-training or fine-tuning), an engine training checkpoint (``encoder.*`` keys) or a bare state dict.

One rule for every consumer: fine-tuning, the linear probe and kNN (:mod:`mixmim.evaluate.weights`), COCO with
either engine (:mod:`mixmim.transfer.stage`) and the launch-time check (``experiments.launching.validate_run``).
Loading the file is :mod:`mixmim.weights.checkpoint`'s. Torch-free (the launcher imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixmim.runs.rundir import ENCODER_FILE, SIBLING_INIT, sibling_encoder

INIT_KEYWORDS = ("pretrain", "random")
ALLOWED = ("'pretrain' (this run's pre-training), 'run:<base>' (a sibling run's), 'random' (no loading) or a path "
           "to a checkpoint file")


class InitWeightsError(ValueError):
    """``cfg.init`` names no usable checkpoint (empty, missing, unreadable or another architecture); the message
    says which file and what is allowed."""


@dataclass(frozen=True)
class InitSource:
    """Where a stage's encoder weights come from: ``kind`` pretrain | run | random | path, and the file (None for
    random)."""

    kind: str
    path: Path | None = None

    def describe(self) -> dict[str, Any]:
        """For ``result.json``: ``{"init": kind, "init_path": str | None}``."""
        return {"init": self.kind, "init_path": str(self.path) if self.path else None}


def resolve_init(init: str, run_dir: str | Path, seed: int = 0, *, pretrain_planned: bool = False) -> InitSource:
    """Turn ``cfg.init`` into an :class:`InitSource`, checking that its file exists.

    Args:
        run_dir: the run folder (``init=pretrain`` reads ``<run_dir>/pretrain/encoder.pth``).
        seed: the run's seed (``init=run:<base>`` reads the sibling ``<base>-s<seed>``).
        pretrain_planned: the run's own pre-training stage runs first and writes the encoder, so a missing
            file is not an error yet (the launch-time check); a stage resolves with False.

    Raises:
        InitWeightsError: ``init`` is empty, or its file does not exist (for ``pretrain``: the pre-training
            stage has not finished in ``run_dir``).
    """
    if not init:
        raise InitWeightsError(f"init is empty; set init to {ALLOWED}")
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
        path = Path(run_dir) / "pretrain" / ENCODER_FILE  # the pre-training stage's folder
        if not path.is_file() and not pretrain_planned:
            raise InitWeightsError(
                f"init=pretrain, but the pre-trained encoder {path} does not exist: run the 'pretrain' stage "
                f"of this run first, or set init to {ALLOWED}"
            )
        return InitSource("pretrain", path)
    path = Path(init).expanduser()
    if not path.is_file():
        raise InitWeightsError(f"init={init!r}: no such checkpoint file ({path.resolve()}); set init to {ALLOWED}")
    return InitSource("path", path)
