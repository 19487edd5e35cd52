"""The config a preflight runs a stage with: the run's resolved config, changed only where it must be.

What changes (each change is a note in the stage's row, so nothing is changed silently):

- the stage stops after ``K`` optimizer steps (``<stage>.max_steps``);
- the per-rank batch, when ``--batch-size`` is given (on CPU; the recipe's per-GPU batch is reported beside it);
- data: the user's ``data.root`` / ``coco.root`` when they exist, else the generated JPEG data
  (:mod:`experiments.preflight.data`); the loader runs in the stage's process (``data.num_workers=0``: the
  loader's rate is measured separately, per worker);
- one process (``launch``: 1 node, 1 task): what one GPU of the run does;
- ``init``: a path that does not exist is replaced by a stand-in encoder of the backbone (random weights, loaded
  through the same code), so the stage's shapes are still checked; the row says so.

Precision is mapped in the stage's process, where the device is known (:mod:`experiments.preflight.worker`).
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixmim.config import RunConfig, apply_overrides

TRAINED = ("pretrain", "finetune", "linprobe", "coco")  # stages with max_steps and a batch size
STANDIN_ENCODER = "standin-encoder.pth"


@dataclass
class PreflightData:
    """Where generated data lies (None: not generated for this experiment)."""

    imagenet: Path | None = None
    coco: Path | None = None


@dataclass
class StageSetup:
    """The config to run, what was changed and why (``notes``; ``warnings``: what the real run would fail on),
    and where a stand-in encoder goes (None: not needed)."""

    cfg: RunConfig
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    standin: Path | None = None


def needs_imagenet(cfg: RunConfig) -> bool:
    return cfg.data.dataset == "folder" and not Path(cfg.data.root or "/nonexistent").is_dir()


def needs_coco(cfg: RunConfig, stage: str) -> bool:
    return stage == "coco" and not Path(cfg.coco.root or "/nonexistent").is_dir()


def stage_setup(cfg: RunConfig, stage: str, steps: int, batch_size: int | None, data: PreflightData,
                run_dir: Path) -> StageSetup:  # fmt: skip
    """The preflight config of ``stage`` of run ``cfg`` (``run_dir``: the chain's scratch run folder)."""
    changes: dict[str, Any] = {"launch.nodes": 1, "launch.tasks_per_node": 1, "launch.gpus_per_node": 0,
                               "data.num_workers": 0}  # fmt: skip
    notes: list[str] = []
    warnings: list[str] = []
    if stage in TRAINED:
        changes[f"{stage}.max_steps"] = steps
    if batch_size and stage in (*TRAINED, "knn"):
        changes[f"{stage}.batch_size"] = batch_size
    if needs_imagenet(cfg) and data.imagenet is not None:
        changes["data.root"] = str(data.imagenet)
        said = f"data.root={cfg.data.root!r} does not exist" if cfg.data.root else "data.root is empty"
        (warnings if cfg.data.root else notes).append(f"{said}: generated ImageNet-sized JPEGs used")
    if needs_coco(cfg, stage) and data.coco is not None:
        changes["coco.root"] = str(data.coco)
        said = f"coco.root={cfg.coco.root!r} does not exist" if cfg.coco.root else "coco.root is empty"
        (warnings if cfg.coco.root else notes).append(f"{said}: generated COCO-like JPEGs (640x480, boxes, masks) used")
    standin = None
    if stage != "pretrain" and cfg.init not in ("pretrain", "random") and not Path(cfg.init).is_file():
        standin = run_dir / STANDIN_ENCODER
        changes["init"] = str(standin)
        warnings.append(f"init={cfg.init!r} is not a file: a stand-in encoder (random weights) was loaded instead")
    new = apply_overrides(cfg, changes)
    new.name = cfg.name
    return StageSetup(new, notes, warnings, standin)
