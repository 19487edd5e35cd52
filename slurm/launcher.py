"""One launcher for every stage of every run (dinov2's ``submit_jobs`` is the model).

``launch`` skips stages that are done (``result.json``) and runs that are in flight elsewhere, then hands
each run's remaining stages to an executor:

- ``local`` (default): in order, in this process (or as ``launch.tasks_per_node`` local ranks through torch's
  elastic launcher, :mod:`slurm.local_ranks`); a failure is recorded and ends that run only;
- ``debug``: the same, but the first exception propagates with its traceback;
- ``slurm``: submitit jobs chained with ``afterok`` (job arrays for grids), requeued on preemption.

A run is worked on only under its lock (:class:`mixmim.runs.rundir.RunLock`, an OS file lock the kernel drops
when its process dies): locally the launcher holds each run's lock while it prepares (``RunSpec.prepare``:
the config check and write, one locked step) and runs its stages; for Slurm it holds the locks while it
prepares and submits, and each job takes its run's lock while it runs. A run whose lock another live process
holds, or whose stages are queued or running on Slurm, is "in flight": left to that launch, and said so.
Two launches into one folder thus share the runs instead of training one stage twice. ``takeover`` ignores
launch records of Slurm jobs that accounting still shows queued or running but the user knows are dead.

A stage that was partly done is simply started again: it resumes from its own checkpoint. Nothing is
overwritten: results are only ever written by the stages, once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mixmim.runs.rendezvous import tasks_per_node
from mixmim.runs.rundir import LAUNCH_POSITION_ENV, RunLock, describe_holder, is_done
from slurm.local import run_locally
from slurm.report import IN_FLIGHT, SKIPPED, LaunchReport, StageLaunch
from slurm.spec import RunSpec, StageSpec, check_runs
from slurm.status import DONE, StageView, stage_views
from slurm.submit import submit_to_slurm

if TYPE_CHECKING:
    from mixmim.config import LaunchConfig

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "debug", "slurm")


def launch(runs: list[RunSpec], launch_cfg: LaunchConfig, log_dir: Path, takeover: bool = False) -> LaunchReport:
    """Run (``local``, ``debug``) or submit (``slurm``) every stage of ``runs`` that is not done.

    Args:
        runs: the runs, each a directory and its chain of stages.
        launch_cfg: ``executor`` and, for Slurm, the resources (``mixmim.config.LaunchConfig``).
        log_dir: where logs go: submitit's job folder on Slurm, ``<log_dir>/<run>/<stage>.log`` locally.
        takeover: launch stages whose Slurm jobs accounting shows queued or running (records the user
            knows are dead). A run whose lock a live process holds is never taken over.

    Raises:
        ValueError: an unknown executor, or runs sharing a name or a directory.
        Exception: with ``executor=debug``, the first exception a stage raises.
    """
    executor = launch_cfg.executor
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; allowed: {', '.join(EXECUTORS)}")
    check_runs(runs)
    log_dir = Path(log_dir).absolute()
    report = LaunchReport(executor)
    if executor == "slurm":
        outcomes, report.jobs = _submit_all(runs, launch_cfg, log_dir, takeover)
    else:
        outcomes = _run_all_locally(runs, log_dir, executor, takeover, local_tasks(launch_cfg))
    by_stage = {(item.run, item.stage): item for item in outcomes}
    report.stages = [by_stage[(run.name, stage.name)] for run in runs for stage in run.stages]
    logger.info("%s", report.summary())
    return report


def local_tasks(launch_cfg: LaunchConfig) -> int:
    """Ranks a local stage runs as: :func:`mixmim.runs.rendezvous.tasks_per_node` (``launch.nodes`` does not apply to
    this one machine)."""
    return tasks_per_node(launch_cfg)


def _run_all_locally(runs: list[RunSpec], log_dir: Path, executor: str, takeover: bool,
                     tasks: int = 1) -> list[StageLaunch]:  # fmt: skip
    """Each run in turn under its lock: prepare, plan, run its stages (each as ``tasks`` local ranks); runs
    held elsewhere are skipped."""
    outcomes: list[StageLaunch] = []
    for index, run in enumerate(runs, 1):
        lock = RunLock(run.run_dir)
        if not lock.acquire():
            outcomes += _held_elsewhere(run, lock)
            continue
        try:
            if run.prepare is not None:
                run.prepare()
            decided, pending = plan([run], takeover)
            outcomes += decided
            with _launch_position(index, len(runs)):
                outcomes += run_locally(pending, log_dir, executor, tasks)
        finally:
            lock.release()
    return outcomes


def _submit_all(runs: list[RunSpec], launch_cfg: LaunchConfig, log_dir: Path, takeover: bool):
    """Hold every free run's lock while preparing and submitting; runs held elsewhere are skipped."""
    outcomes: list[StageLaunch] = []
    with contextlib.ExitStack() as stack:
        free = []
        for run in runs:
            lock = RunLock(run.run_dir)
            if lock.acquire():
                stack.callback(lock.release)
                free.append(run)
            else:
                outcomes += _held_elsewhere(run, lock)
        for run in free:
            if run.prepare is not None:
                run.prepare()
        decided, pending = plan(free, takeover)
        launched, jobs = submit_to_slurm(pending, launch_cfg, log_dir)
    return outcomes + decided + launched, jobs


def _held_elsewhere(run: RunSpec, lock: RunLock) -> list[StageLaunch]:
    """Outcomes of a run another live process holds: done stages skipped, the others in flight there."""
    logger.info("%s: being worked on by %s; left to it (not launched again)", run.name,
                describe_holder(lock.holder()))  # fmt: skip
    return [StageLaunch(run.name, stage.name, SKIPPED if is_done(run.run_dir, stage.name) else IN_FLIGHT)
            for stage in run.stages]  # fmt: skip


@contextlib.contextmanager
def _launch_position(index: int, total: int) -> Iterator[None]:
    """Tell the stages (their progress lines) that this is run ``index`` of ``total``."""
    saved = os.environ.get(LAUNCH_POSITION_ENV)
    os.environ[LAUNCH_POSITION_ENV] = f"{index}/{total}"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(LAUNCH_POSITION_ENV, None)
        else:
            os.environ[LAUNCH_POSITION_ENV] = saved


def plan(
    runs: list[RunSpec], takeover: bool = False
) -> tuple[list[StageLaunch], list[tuple[RunSpec, list[StageSpec]]]]:
    """Split the stages into those decided now (done: skipped; in flight: left alone) and, per run, the
    stages still to launch, in order. Call it holding the runs' locks (a local attempt is then never in
    flight); ``takeover`` launches stages whose Slurm records still look queued or running."""
    views = iter(stage_views(runs))
    decided: list[StageLaunch] = []
    pending: list[tuple[RunSpec, list[StageSpec]]] = []
    for run in runs:
        run_views: list[StageView] = [next(views) for _ in run.stages]
        in_flight = any(view.in_flight for view in run_views)
        if in_flight and takeover:
            logger.warning("%s: taking over from launch records that look in flight (--takeover)", run.name)
            in_flight = False
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
            logger.info("%s: already queued or running from an earlier launch; not launched again "
                        "(pass --takeover if you know those jobs are dead)", run.name)  # fmt: skip
        if todo:
            pending.append((run, todo))
    return decided, pending
