"""Stage bookkeeping shared by the evaluations: skipping a finished stage, the manifest entry, ``result.json``.

``result.json`` of an evaluation holds ``stage``, ``status: "done"``, ``metrics`` (``top1``/``top5`` in
percent, ...), the recipe actually used (``epochs``, ``steps``, ``effective_batch``, ``lr``, ``blr``,
``precision``, ``world_size``, ``wall_time_s``, ``gpu_hours``, ``images_per_s``) and where the encoder
weights came from (``init``, ``init_path``). The same recipe fields go into ``manifest.json``'s
``stages.<stage>`` entry (:func:`mixmim.engine.record_manifest`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mixmim.config import RunConfig
from mixmim.data import dataset_fingerprint
from mixmim.engine.manifest import record_manifest
from mixmim.engine.recipe import Recipe
from mixmim.rundir import is_done, read_result, write_result

logger = logging.getLogger(__name__)


def finished_result(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """The stored result when ``<run_dir>/<stage>/result.json`` exists (the stage is then skipped), else None."""
    if not is_done(run_dir, stage):
        return None
    logger.info("stage %s is done in %s; skipping", stage, run_dir)
    return read_result(run_dir, stage)


def gpu_hours(wall_time_s: float, world_size: int, device: torch.device) -> float:
    """GPU-hours of a stage: wall time x processes on GPUs (0 on the CPU)."""
    return wall_time_s * world_size / 3600.0 if device.type == "cuda" else 0.0


def recipe_fields(recipe: Recipe) -> dict[str, Any]:
    """The recipe part of the manifest entry of a training stage (fine-tune, linear probe)."""
    return {
        "effective_batch": recipe.effective_batch,
        "lr": recipe.lr,
        "blr": recipe.blr,
        "lr_scale_base": recipe.lr_scale_base,
        "precision": recipe.precision,
        "world_size": recipe.world_size,
        "epochs": recipe.epochs,
        "max_steps": recipe.max_steps,
    }


def manifest_fields(
    cfg: RunConfig, recipe: dict[str, Any], dataset: Dataset, wall_time_s: float, device: torch.device
) -> dict[str, Any]:
    """The ``stages.<stage>`` manifest entry: ``recipe`` plus seed, data root and fingerprint, time, GPU-hours."""
    return {
        **recipe,
        "seed": cfg.seed,
        "data_root": str(getattr(dataset, "root", "")),
        "data_fingerprint": dataset_fingerprint(dataset),
        "wall_time_s": wall_time_s,
        "gpu_hours": gpu_hours(wall_time_s, int(recipe["world_size"]), device),
    }


def write_stage_result(
    run_dir: str | Path,
    cfg: RunConfig,
    stage: str,
    metrics: dict[str, Any],
    fields: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the manifest entry ``fields`` and write ``result.json`` (``metrics``, ``fields``, ``extra``).

    Returns:
        The result as written, with ``stage``.
    """
    record_manifest(run_dir, cfg, int(fields["world_size"]), stage, fields)
    result = {"status": "done", "metrics": metrics, **fields, **(extra or {})}
    write_result(run_dir, stage, result)
    logger.info("stage %s done: %s", stage, {k: v for k, v in metrics.items() if k in ("top1", "top5")})
    return {"stage": stage, **result}
