"""What :func:`slurm.launch` did with every stage, and a way to wait for the Slurm jobs it submitted."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import submitit

SKIPPED = "skipped"  # already done before this launch
IN_FLIGHT = "in-flight"  # held by another live launch, or queued or running on Slurm: not launched again
SUBMITTED = "submitted"  # sent to Slurm by this launch
COMPLETED = "completed"  # run in this process by this launch and succeeded
FAILED = "failed"  # run in this process by this launch and raised (log_path, error)
BLOCKED = "blocked"  # not run: an earlier stage of its run failed in this launch
OUTCOMES = (SKIPPED, IN_FLIGHT, SUBMITTED, COMPLETED, FAILED, BLOCKED)


@dataclass
class StageLaunch:
    """The outcome of one stage in one launch."""

    run: str
    stage: str
    outcome: str
    job_id: str = ""
    log_path: Path | None = None
    error: str = ""


@dataclass
class LaunchReport:
    """Every stage of every run, in order, with its outcome; ``jobs`` holds the submitted Slurm jobs."""

    executor: str
    stages: list[StageLaunch] = field(default_factory=list)
    jobs: dict[tuple[str, str], submitit.Job] = field(default_factory=dict)

    def with_outcome(self, outcome: str) -> list[StageLaunch]:
        return [stage for stage in self.stages if stage.outcome == outcome]

    @property
    def ok(self) -> bool:
        """No stage failed in this process (Slurm jobs are judged later, by :func:`slurm.status`)."""
        return not self.with_outcome(FAILED)

    def summary(self) -> str:
        """One line: how many stages had each outcome, and the log of each failure."""
        counts = Counter(stage.outcome for stage in self.stages)
        parts = [f"{counts[outcome]} {outcome}" for outcome in OUTCOMES if counts[outcome]]
        if counts[IN_FLIGHT]:
            parts[parts.index(f"{counts[IN_FLIGHT]} {IN_FLIGHT}")] += " (left to another live launch or Slurm job)"
        line = f"{self.executor}: " + (", ".join(parts) or "nothing to do")
        for stage in self.with_outcome(FAILED):
            line += f"\n  {stage.run}/{stage.stage} failed: {stage.error} (log: {stage.log_path})"
        return line

    def wait(self, timeout_s: float | None = None, poll_s: float = 1.0) -> None:
        """Block until every submitted Slurm job has ended (done, failed or cancelled).

        Raises:
            TimeoutError: the jobs still run after ``timeout_s`` seconds.
        """
        jobs = list(self.jobs.values())
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while jobs:
            jobs[0].watcher.update()  # one sacct call for all jobs
            jobs = [job for job in jobs if not job.done()]
            if not jobs:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(jobs)} Slurm job(s) still running after {timeout_s}s: {[job.job_id for job in jobs]}"
                )
            time.sleep(poll_s)
