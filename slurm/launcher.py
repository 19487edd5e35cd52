"""One launcher for every stage of every run (dinov2's ``submit_jobs`` is the model).

``launch`` skips stages that are done (``result.json``) and runs that are still in flight from an earlier
launch, then hands each run's remaining stages to an executor:

- ``local`` (default): in order, in this process; a failure is recorded and ends that run only;
- ``debug``: the same, but the first exception propagates with its traceback;
- ``slurm``: submitit jobs chained with ``afterok`` (job arrays for grids), requeued on preemption.

A stage that was partly done is simply started again: it resumes from its own checkpoint. Nothing is
overwritten: results are only ever written by the stages, once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from slurm.local import run_locally
from slurm.report import IN_FLIGHT, SKIPPED, LaunchReport, StageLaunch
from slurm.spec import RunSpec, StageSpec, check_runs
from slurm.status import DONE, StageView, stage_views
from slurm.submit import submit_to_slurm

if TYPE_CHECKING:
    from mixmim.config import LaunchConfig

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "debug", "slurm")


def launch(runs: list[RunSpec], launch_cfg: LaunchConfig, log_dir: Path) -> LaunchReport:
    """Run (``local``, ``debug``) or submit (``slurm``) every stage of ``runs`` that is not done.

    Args:
        runs: the runs, each a directory and its chain of stages.
        launch_cfg: ``executor`` and, for Slurm, the resources (``mixmim.config.LaunchConfig``).
        log_dir: where logs go: submitit's job folder on Slurm, ``<log_dir>/<run>/<stage>.log`` locally.

    Raises:
        ValueError: an unknown executor, or runs sharing a name or a directory.
        Exception: with ``executor=debug``, the first exception a stage raises.
    """
    executor = launch_cfg.executor
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; allowed: {', '.join(EXECUTORS)}")
    check_runs(runs)
    log_dir = Path(log_dir).absolute()
    decided, pending = plan(runs)
    report = LaunchReport(executor)
    if executor == "slurm":
        launched, report.jobs = submit_to_slurm(pending, launch_cfg, log_dir)
    else:
        launched = run_locally(pending, log_dir, executor)
    by_stage = {(item.run, item.stage): item for item in decided + launched}
    report.stages = [by_stage[(run.name, stage.name)] for run in runs for stage in run.stages]
    logger.info("%s", report.summary())
    return report


def plan(runs: list[RunSpec]) -> tuple[list[StageLaunch], list[tuple[RunSpec, list[StageSpec]]]]:
    """Split the stages into those decided now (done: skipped; in flight: left alone) and, per run, the
    stages still to launch, in order."""
    views = iter(stage_views(runs))
    decided: list[StageLaunch] = []
    pending: list[tuple[RunSpec, list[StageSpec]]] = []
    for run in runs:
        run_views: list[StageView] = [next(views) for _ in run.stages]
        in_flight = any(view.in_flight for view in run_views)
        todo = []
        for stage, view in zip(run.stages, run_views):
            if view.status.state == DONE:
                decided.append(StageLaunch(run.name, stage.name, SKIPPED, log_path=view.status.log_path))
            elif in_flight:
                job_id = view.record.job_id if view.record else ""
                decided.append(StageLaunch(run.name, stage.name, IN_FLIGHT, job_id, view.status.log_path))
            else:
                todo.append(stage)
        if in_flight:
            logger.info("%s: already queued or running from an earlier launch; not launched again", run.name)
        if todo:
            pending.append((run, todo))
    return decided, pending
