"""Where every stage of every run stands: done, running, pending, failed (with its log) or blocked.

Read from the run directories (``result.json``, ``launch.json``, ``error.json``), from the runs' locks (a
local attempt runs while its run's lock is held; :class:`mixmim.runs.rundir.RunLock`) and, for stages on Slurm,
from accounting (``sacct``, through submitit's watcher: one call for all jobs). Hostnames and PIDs in the
records are never used to decide: a container restarted with a new hostname or a reused PID changes nothing.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import submitit

from mixmim.runs import rundir
from slurm.records import LaunchRecord, read_error_record, read_launch_record
from slurm.spec import RunSpec

logger = logging.getLogger(__name__)

DONE = "done"  # result.json exists
RUNNING = "running"  # a Slurm job or a live local process is working on it
PENDING = "pending"  # not launched yet, or queued on Slurm (waiting, requeued after preemption)
FAILED = "failed"  # its latest attempt ended without a result; log_path says why
INTERRUPTED = "interrupted"  # its latest attempt was stopped by the user (Ctrl-C); a new launch resumes it
BLOCKED = "blocked"  # an earlier stage of its run failed, so it will not run
STATES = (DONE, RUNNING, PENDING, FAILED, INTERRUPTED, BLOCKED)

# Slurm job states (sacct) that mean the job is still on its way; every other state without a result is a
# failure. PREEMPTED and REQUEUED jobs come back (submitit requeues them).
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"}
_SLURM_QUEUED = {
    "PENDING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESV_DEL_HOLD",
    "SUSPENDED",
    "PREEMPTED",
    "READY",
    "UNKNOWN",
}


class StageStatus(NamedTuple):
    """One row of :func:`status`."""

    run: str
    stage: str
    state: str
    log_path: Path | None


@dataclass
class StageView:
    """A stage's status together with its latest launch record (what the launcher plans with)."""

    status: StageStatus
    record: LaunchRecord | None

    @property
    def in_flight(self) -> bool:
        """Launched earlier and still queued or running: launching it again would run it twice."""
        return self.record is not None and self.status.state in (RUNNING, PENDING)

    @property
    def queued_on_slurm(self) -> bool:
        """In flight as a Slurm job (as opposed to a local process holding the run's lock)."""
        return self.in_flight and self.record is not None and self.record.executor == "slurm"


def status(runs: list[RunSpec]) -> list[StageStatus]:
    """``(run, stage, state, log_path)`` for every stage of every run, in order; states are :data:`STATES`."""
    return [view.status for view in stage_views(runs)]


def stage_views(runs: list[RunSpec]) -> list[StageView]:
    """The status and launch record of every stage of every run, in order."""
    records = {
        (run.name, stage.name): read_launch_record(run.run_dir, stage.name) for run in runs for stage in run.stages
    }
    slurm_records = [record for record in records.values() if record is not None and record.executor == "slurm"]
    slurm_states = slurm_job_states(slurm_records)
    views = []
    for run in runs:
        blocked = False
        for stage in run.stages:
            record = records[(run.name, stage.name)]
            state, log_path = _stage_state(run.run_dir, stage.name, record, slurm_states, blocked)
            blocked = blocked or state == FAILED
            views.append(StageView(StageStatus(run.name, stage.name, state, log_path), record))
    return views


def slurm_job_states(records: list[LaunchRecord]) -> dict[str, str]:
    """Slurm state (``RUNNING``, ``COMPLETED``, ``CANCELLED``, ...) of each record's job, from one sacct call."""
    if not records:
        return {}
    if shutil.which("sacct") is None:
        logger.warning("sacct not found: the state of %d Slurm job(s) is unknown (shown as pending)", len(records))
        return {}
    jobs = [submitit.SlurmJob(folder=record.folder, job_id=record.job_id) for record in records]
    jobs[0].watcher.update()
    return {job.job_id: job.watcher.get_state(job.job_id, mode="cache").split()[0] for job in jobs}


def _stage_state(
    run_dir: Path, stage: str, record: LaunchRecord | None, slurm_states: dict[str, str], blocked: bool
) -> tuple[str, Path | None]:
    log_path = Path(record.stderr) if record is not None else None
    if rundir.is_done(run_dir, stage):
        return DONE, log_path
    if blocked:
        return BLOCKED, None
    if record is None:
        return PENDING, None
    error = read_error_record(run_dir, stage)
    if error is not None and error.get("job_id") == record.job_id:
        return (INTERRUPTED if error.get("interrupted") else FAILED), Path(error["log_path"])
    if record.executor == "slurm":
        slurm_state = slurm_states.get(record.job_id, "UNKNOWN")
        if slurm_state in _SLURM_RUNNING:
            return RUNNING, log_path
        return (PENDING if slurm_state in _SLURM_QUEUED else FAILED), log_path
    # A local attempt runs while some other process holds the run's lock; otherwise it ended without a result.
    return (RUNNING if rundir.lock_holder(run_dir) is not None else FAILED), log_path
