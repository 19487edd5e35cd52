"""Per-stage launch records: ``<run_dir>/<stage>/launch.json`` and ``error.json``.

``launch.json`` says how the stage's latest attempt was started (executor, job id, log paths, time);
every attempt is also appended to ``launches.jsonl``, so no record is lost. ``error.json`` holds the
traceback of a stage that raised (or was interrupted), tagged with the job id of its attempt. ``status`` reads both.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixmim.runs import rundir

LAUNCH_FILE = "launch.json"
LAUNCH_HISTORY_FILE = "launches.jsonl"
ERROR_FILE = "error.json"


@dataclass
class LaunchRecord:
    """How one attempt of a stage was started.

    Attributes:
        executor: ``local``, ``debug`` or ``slurm``.
        job_id: the Slurm job id (``123`` or ``123_4`` in an array), or ``local-<hex>`` for in-process runs.
        stdout, stderr: the attempt's log files (the same file for in-process runs).
        submitted_at: ISO 8601 time (UTC).
        folder: submitit's job folder (Slurm).
        dependency: the Slurm dependency the job waits on (``afterok:...``, ``aftercorr:...``), if any.
        host, pid: where an in-process attempt ran (information only: whether a run is being worked on is
            told by its lock, :class:`mixmim.runs.rundir.RunLock`).
    """

    run: str
    stage: str
    executor: str
    job_id: str
    stdout: str
    stderr: str
    submitted_at: str
    folder: str = ""
    dependency: str = ""
    host: str = ""
    pid: int = 0


def now_iso() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_launch_record(run_dir: Path, record: LaunchRecord) -> Path:
    """Write ``launch.json`` (atomically) and append the record to ``launches.jsonl``."""
    folder = rundir.stage_dir(run_dir, record.stage)
    fields = dataclasses.asdict(record)
    rundir.append_jsonl(folder / LAUNCH_HISTORY_FILE, fields)
    rundir.atomic_write_json(folder / LAUNCH_FILE, fields)
    return folder / LAUNCH_FILE


def read_launch_record(run_dir: Path, stage: str) -> LaunchRecord | None:
    """The latest launch record of a stage, or None if it was never launched."""
    path = Path(run_dir) / stage / LAUNCH_FILE
    if not path.is_file():
        return None
    fields = rundir.read_json(path)
    known = {f.name for f in dataclasses.fields(LaunchRecord)}
    return LaunchRecord(**{key: value for key, value in fields.items() if key in known})


def write_error_record(
    run_dir: Path, stage: str, job_id: str, traceback: str, log_path: str | Path, interrupted: bool = False
) -> Path:
    """Write ``error.json``: the traceback of the attempt ``job_id`` and where its log is (``interrupted``:
    stopped by the user, e.g. Ctrl-C, rather than failed)."""
    path = rundir.stage_dir(run_dir, stage) / ERROR_FILE
    record = {
        "stage": stage,
        "job_id": job_id,
        "traceback": traceback,
        "log_path": str(log_path),
        "failed_at": now_iso(),
        "interrupted": interrupted,
    }
    rundir.atomic_write_json(path, record)
    return path


def read_error_record(run_dir: Path, stage: str) -> dict[str, Any] | None:
    """The stage's ``error.json``, or None."""
    path = Path(run_dir) / stage / ERROR_FILE
    return rundir.read_json(path) if path.is_file() else None
