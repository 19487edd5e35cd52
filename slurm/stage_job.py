"""One stage of one run as a callable job, the same object for every executor.

On Slurm it is a ``submitit.helpers.Checkpointable``: when the job is preempted or reaches its time limit,
submitit calls ``checkpoint()``, which returns a ``DelayedSubmission`` of the job itself; submitit then
requeues it, and the requeued job calls the stage again, which resumes from its own last checkpoint
(stages checkpoint themselves; this wrapper holds no training state).

A stage runs under its run's lock (:class:`mixmim.runs.rundir.RunLock`): in a launcher that holds it already the
lock is taken again at once; a Slurm job waits for it up to :data:`LOCK_WAIT_S` seconds (the submitting
process holds it for the moment of the submission; another live launch may be working on the run).

A job of several tasks (one rank each, ``launch.tasks_per_node``) is one worker: its rank 0 takes the lock,
with this attempt of the job (:func:`job_attempt`) in the lock's note, and decides under it whether there is
anything to do; the other ranks wait until the stage is done or their own rank 0 holds the run, then follow.
So every rank makes the same decision, and none waits at the process group's rendezvous for a rank 0 that
found the stage done. A requeued job is a new attempt: a note left by a killed rank 0 never misleads it.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import submitit

from mixmim.runs import rundir
from slurm.distributed import export_distributed_env, in_submitit_job
from slurm.records import read_error_record, write_error_record
from slurm.spec import StageSpec

logger = logging.getLogger(__name__)

LOCK_WAIT_S = float(os.environ.get("MIXMIM_LOCK_WAIT_S", "900"))  # how long a Slurm job waits for its run
FOLLOW_POLL_S = 0.5  # how often a rank other than 0 looks whether its rank 0 holds the run


def job_attempt() -> str:
    """``<job id>.<restart count>`` inside a submitit job: one attempt of it (Slurm counts requeues in
    ``SLURM_RESTART_COUNT``)."""
    return f"{submitit.JobEnvironment().job_id}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"


class StageJob(submitit.helpers.Checkpointable):
    """Calls ``stage.fn(stage.cfg, run_dir)`` unless the stage is done; returns the stage's metrics."""

    def __init__(self, run_name: str, run_dir: Path, stage: StageSpec) -> None:
        self.run_name = run_name
        self.run_dir = Path(run_dir)
        self.stage = stage

    def __call__(self) -> dict[str, Any]:
        """Run the stage under its run's lock.

        Raises:
            RunLockError: another live process holds the run (after :data:`LOCK_WAIT_S` in a Slurm job).
        """
        in_job = in_submitit_job()
        if in_job and submitit.JobEnvironment().global_rank != 0:
            return self._follow_rank_zero()
        lock = rundir.RunLock(self.run_dir)
        job = job_attempt() if in_job else ""
        if not lock.acquire(blocking=in_job, timeout_s=LOCK_WAIT_S if in_job else None, poll_s=5.0, job=job):
            raise self._held_elsewhere(lock)
        try:
            return self._run_stage()
        finally:
            lock.release()

    def _follow_rank_zero(self) -> dict[str, Any]:
        """A rank other than 0: run the stage once this job's rank 0 holds the run, or return the stored
        result once the stage is done (rank 0 found it done, or another job finished it).

        Raises:
            RunLockError: neither happened within :data:`LOCK_WAIT_S` seconds (rank 0 gave up too).
        """
        attempt, lock = job_attempt(), rundir.RunLock(self.run_dir)
        deadline = time.monotonic() + LOCK_WAIT_S
        while not rundir.is_done(self.run_dir, self.stage.name):
            if lock.holder().get("job") == attempt:
                break
            if time.monotonic() >= deadline:
                raise rundir.RunLockError(
                    f"{self.run_name}/{self.stage.name}: rank 0 of job {attempt} did not take {self.run_dir} within "
                    f"{LOCK_WAIT_S:.0f} s (last holder: {rundir.describe_holder(lock.holder())}); see rank 0's log"
                )
            time.sleep(FOLLOW_POLL_S)
        return self._run_stage()

    def _held_elsewhere(self, lock: rundir.RunLock) -> rundir.RunLockError:
        holder = rundir.describe_holder(lock.holder())
        return rundir.RunLockError(f"{self.run_name}/{self.stage.name}: {self.run_dir} is being worked on by "
                                   f"{holder}; not run twice (launch it again once that one ended)")  # fmt: skip

    def _run_stage(self) -> dict[str, Any]:
        if rundir.is_done(self.run_dir, self.stage.name):
            logger.info("%s/%s is done: nothing to run", self.run_name, self.stage.name)
            result = rundir.read_result(self.run_dir, self.stage.name) or {}
            return result.get("metrics", result)
        if in_submitit_job():
            _log_to_stderr()
            env = export_distributed_env()
            logger.info("%s/%s: starting in %s with %s", self.run_name, self.stage.name, self.run_dir, env)
        try:
            return self.stage.fn(self.stage.cfg, self.run_dir)
        except Exception:
            if in_submitit_job():
                _record_job_failure(self.run_dir, self.stage.name, traceback.format_exc())
            raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue this very job after preemption or a timeout: the stage resumes from its checkpoint."""
        logger.warning("%s/%s preempted or timed out: requeueing it", self.run_name, self.stage.name)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"StageJob({self.run_name}/{self.stage.name})"


def _record_job_failure(run_dir: Path, stage: str, trace: str) -> None:
    """Write ``error.json`` naming this task's log (submitit's stderr file of its rank): rank 0's failure always,
    another rank's when the record holds none of this job yet (srun then ends the job's other tasks, so the
    first rank to fail is often the only one to say why)."""
    env = submitit.JobEnvironment()
    if env.global_rank != 0:
        previous = read_error_record(run_dir, stage)
        if previous is not None and previous.get("job_id") == env.job_id:
            return
    write_error_record(run_dir, stage, env.job_id, trace, env.paths.stderr)


def _log_to_stderr() -> None:
    """Show the stage's INFO logs in the job's log when nothing configured logging."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
