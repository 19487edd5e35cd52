"""The ``local`` and ``debug`` executors: a run's stages in order, in this process or in local ranks.

With ``tasks`` above one, each stage runs as that many ranks on this machine
(:func:`slurm.local_ranks.run_stage_in_ranks`, torch's elastic launcher); this process keeps the run's lock.

Each attempt writes ``launch.json`` and logs to ``<log_dir>/<run>/<stage>.log``. ``local`` records a
failure in ``error.json`` (traceback and log path), skips the later stages of that run and goes on with
the other runs; ``debug`` stops at the first exception and raises it with its traceback. A Ctrl-C
(``KeyboardInterrupt``) is recorded as an interruption (``status``: interrupted, not failed) and stops the
launch; the next launch resumes the stage from its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

from slurm.local_ranks import run_stage_in_ranks
from slurm.records import LaunchRecord, now_iso, write_error_record, write_launch_record
from slurm.report import BLOCKED, COMPLETED, FAILED, StageLaunch
from slurm.spec import RunSpec, StageSpec
from slurm.stage_job import StageJob

logger = logging.getLogger(__name__)


def run_locally(
    pending: list[tuple[RunSpec, list[StageSpec]]], log_dir: Path, executor: str, tasks: int = 1
) -> list[StageLaunch]:
    """Run each run's pending stages in order, each as ``tasks`` ranks; ``executor`` is ``local`` or ``debug``
    (raise at once)."""
    launches = []
    for run, stages in pending:
        failed = False
        for stage in stages:
            if failed:
                launches.append(StageLaunch(run.name, stage.name, BLOCKED))
                continue
            launch = run_stage_locally(run, stage, log_dir, executor, tasks)
            failed = launch.outcome == FAILED
            launches.append(launch)
    return launches


def run_stage_locally(run: RunSpec, stage: StageSpec, log_dir: Path, executor: str, tasks: int = 1) -> StageLaunch:
    """One attempt of one stage in this process (or ``tasks`` local ranks), logged to its own file."""
    log_path = log_dir / run.name / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    job_id = f"local-{uuid.uuid4().hex[:12]}"
    record = LaunchRecord(
        run=run.name,
        stage=stage.name,
        executor=executor,
        job_id=job_id,
        stdout=str(log_path),
        stderr=str(log_path),
        submitted_at=now_iso(),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    write_launch_record(run.run_dir, record)
    with _logging_to(log_path):
        logger.info("%s/%s: starting (%s executor, job %s)", run.name, stage.name, executor, job_id)
        try:
            if tasks > 1:
                run_stage_in_ranks(run.name, run.run_dir, stage, tasks, log_path)
            else:
                StageJob(run.name, run.run_dir, stage)()
        except (KeyboardInterrupt, *_signal_exceptions(tasks)):
            logger.warning("%s/%s interrupted (Ctrl-C); the next launch resumes it", run.name, stage.name)
            write_error_record(run.run_dir, stage.name, job_id, traceback.format_exc(), log_path, interrupted=True)
            raise
        except Exception as error:
            logger.exception("%s/%s failed", run.name, stage.name)
            write_error_record(run.run_dir, stage.name, job_id, traceback.format_exc(), log_path)
            if executor == "debug":
                raise
            message = f"{type(error).__name__}: {error}"
            return StageLaunch(run.name, stage.name, FAILED, job_id, log_path, message)
        logger.info("%s/%s: done", run.name, stage.name)
    return StageLaunch(run.name, stage.name, COMPLETED, job_id, log_path)


def _signal_exceptions(tasks: int) -> tuple[type[BaseException], ...]:
    """What the elastic agent raises when this process gets SIGINT/SIGTERM while ranks run (an interruption)."""
    if tasks <= 1:
        return ()
    from torch.distributed.elastic.multiprocessing.api import SignalException

    return (SignalException,)


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Send INFO and above from every logger to ``path`` (appending) while the block runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        handler.close()
