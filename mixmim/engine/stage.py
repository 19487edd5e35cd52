"""The one stage runner: the bookkeeping every stage shares, written once.

:func:`run_stage` is what each stage (``tokenizer``, ``pretrain``, ``finetune``, ``linprobe``, ``knn``,
``coco``) goes through:

1. skip a stage that is done (its ``<run_dir>/<stage>/result.json`` exists: the stored result is returned);
   check the config by the rules it was built with (:func:`mixmim.config.validate`: closed sets, ranges);
2. join the ranks (:func:`~mixmim.engine.distributed.init_distributed`) and pick the device;
3. seed every generator with ``cfg.seed`` (:func:`~mixmim.engine.rng.seed_everything`);
4. run the stage's ``work(ctx)`` (usually a task through the :class:`~mixmim.engine.trainer.Trainer`), which
   returns a :class:`StageResult` and writes nothing of the bookkeeping;
5. on rank 0, write ``result.json`` and the manifest's ``stages.<stage>`` entry from that one value (recipe
   fields, GPU-hours by the one formula :func:`gpu_hours`, metrics, extras);
6. meet the other ranks at the barrier.

``result.json`` holds ``stage``, ``status: "done"``, ``metrics``, the manifest entry's fields (the recipe
actually used, ``seed``, ``data_root``, ``data_fingerprint``, ``data_classes``, ``data_images``, ``wall_time_s``,
``gpu_hours``) and the
stage's extras (e.g. ``steps`` and the ``epochs`` done, where the encoder came from). The manifest entry
holds the same recipe fields (``epochs`` there is the planned count) and the stage's manifest extras.
A stage without a recipe (the tokenizer: nothing trains) records ``wall_time_s`` and its extras only,
and no manifest entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mixmim.config import RunConfig, validate
from mixmim.engine.distributed import DistEnv, barrier, default_device, init_distributed
from mixmim.engine.manifest import record_manifest
from mixmim.engine.recipe import Recipe
from mixmim.engine.rng import seed_everything
from mixmim.runs.rundir import is_done, read_result, write_result

__all__ = ["StageContext", "StageResult", "finished_result", "gpu_hours", "recipe_fields", "run_stage", "stage_fields"]

logger = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What a stage computed; the runner writes ``result.json`` and the manifest entry from it.

    Attributes:
        metrics: the stage's figures (``loss``; ``top1``/``top5`` in percent; ``ap_box``, ...).
        recipe: the recipe actually used (:func:`recipe_fields`, with at least ``world_size``); None for a
            stage that trains nothing and has no recipe (no manifest entry then).
        wall_time_s: seconds the stage's work took (training time for a training stage).
        data_root: where the training data came from; data_fingerprint: its fingerprint (None: not taken);
            data_classes / data_images: its class count and the images the stage read
            (:func:`mixmim.data.dataset_counts`; None: not counted). The report checks them against the
            reference's dataset (``reports.drift``).
        extra: result-only fields, after the recipe ones (they win: ``epochs`` done beside the planned).
        manifest_extra: manifest-only fields (e.g. the COCO engine and its config).
    """

    metrics: dict[str, Any]
    recipe: dict[str, Any] | None
    wall_time_s: float
    data_root: str = ""
    data_fingerprint: str | None = None
    data_classes: int | None = None
    data_images: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    manifest_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """What ``work`` is given: the stage, its config and run folder, the ranks and the device."""

    stage: str
    cfg: RunConfig
    run_dir: Path
    env: DistEnv
    device: torch.device

    def record_started(self, partial: StageResult) -> None:
        """Record the manifest entry of a stage that starts (rank 0; wall time and GPU-hours so far), so a
        running stage already names its recipe; the runner rewrites it when the stage ends."""
        if self.env.is_main and partial.recipe is not None:
            record_manifest(self.run_dir, self.cfg, int(partial.recipe["world_size"]), self.stage,
                            {**stage_fields(self.cfg, partial, self.device), **partial.manifest_extra})  # fmt: skip


def finished_result(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """The stored result when ``<run_dir>/<stage>/result.json`` exists (the stage is then skipped), else None."""
    if not is_done(run_dir, stage):
        return None
    logger.info("stage %s is done in %s; skipping", stage, run_dir)
    return read_result(run_dir, stage) or {}


def gpu_hours(wall_time_s: float, world_size: int, device: torch.device | str) -> float:
    """GPU-hours of a stage: wall time x processes, on GPUs (0 on the CPU). The suite's one formula."""
    return wall_time_s * world_size / 3600.0 if torch.device(device).type == "cuda" else 0.0


def recipe_fields(recipe: Recipe) -> dict[str, Any]:
    """The recipe part of a training stage's manifest entry (pre-training, fine-tuning, the linear probe)."""
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


def run_stage(stage: str, cfg: RunConfig, run_dir: str | Path, work: Callable[[StageContext], StageResult | None],
              *, device: torch.device | None = None) -> dict[str, Any]:  # fmt: skip
    """Run ``work`` as the stage ``stage`` of ``run_dir`` with the bookkeeping of the module docstring.

    Args:
        work: computes the stage on every rank (or on rank 0 only) and returns its :class:`StageResult`
            (rank 0's is written; other ranks may return None).
        device: the device to use (default: ``cuda:<local rank>``, else the CPU).

    Returns:
        The result as written to ``result.json`` (with ``stage``) on rank 0, or the stored one when the stage
        was done; other ranks get ``{"stage": stage}``.
    """
    done = finished_result(run_dir, stage)
    if done is not None:
        return done
    validate(cfg)  # a config changed past its checks (set directly) is refused here, by the same rules
    env = init_distributed()
    ctx = StageContext(stage, cfg, Path(run_dir), env, device or default_device(env))
    seed_everything(cfg.seed)
    outcome = work(ctx)
    result: dict[str, Any] = {"stage": stage}
    if env.is_main:
        if outcome is None:
            raise RuntimeError(f"stage {stage}: rank 0's work returned no result")
        result = _write(ctx, outcome)
    barrier()
    return result


def stage_fields(cfg: RunConfig, outcome: StageResult, device: torch.device) -> dict[str, Any]:
    """The manifest entry's fields: the recipe, seed, data, wall time and GPU-hours."""
    assert outcome.recipe is not None
    return {
        **outcome.recipe,
        "seed": cfg.seed,
        "data_root": outcome.data_root,
        "data_fingerprint": outcome.data_fingerprint,
        "data_classes": outcome.data_classes,
        "data_images": outcome.data_images,
        "wall_time_s": outcome.wall_time_s,
        "gpu_hours": gpu_hours(outcome.wall_time_s, int(outcome.recipe["world_size"]), device),
    }


def _write(ctx: StageContext, outcome: StageResult) -> dict[str, Any]:
    """The one writer of a stage's ``result.json`` and manifest entry (rank 0)."""
    if outcome.recipe is None:
        fields = {"wall_time_s": outcome.wall_time_s}
    else:
        fields = stage_fields(ctx.cfg, outcome, ctx.device)
        record_manifest(ctx.run_dir, ctx.cfg, int(outcome.recipe["world_size"]), ctx.stage,
                        {**fields, **outcome.manifest_extra})  # fmt: skip
    result = {"status": "done", "metrics": outcome.metrics, **fields, **outcome.extra}
    write_result(ctx.run_dir, ctx.stage, result)
    logger.info("stage %s done: %s", ctx.stage, {k: v for k, v in outcome.metrics.items()
                                                  if k in ("loss", "top1", "top5", "ap_box")})  # fmt: skip
    return {"stage": ctx.stage, **result}
