"""The ``slurm`` executor: every pending stage becomes a submitit job, chained per run.

Runs whose pending stages are the same (same names, in the same order) go out together: stage ``k`` of
all of them is one job array (``executor.batch()``), and stage ``k + 1`` is an array that depends on it
with ``aftercorr`` (task ``i`` starts once task ``i`` of the previous array succeeded), so runs stay
independent: one run's failure cancels only its own later stages. A group of one run is a plain job
chained with ``afterok``. Jobs whose dependency can no longer be met are cancelled by Slurm
(``--kill-on-invalid-dep=yes``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from slurm.executor import make_slurm_executor
from slurm.records import LaunchRecord, now_iso, write_launch_record
from slurm.report import SUBMITTED, StageLaunch
from slurm.spec import RunSpec, StageSpec
from slurm.stage_job import StageJob

if TYPE_CHECKING:
    from mixmim.config import LaunchConfig

logger = logging.getLogger(__name__)

RunStages = tuple[RunSpec, list[StageSpec]]


class SlurmSubmissionError(RuntimeError):
    """Slurm cannot be reached or refused a job; the message says what to check."""


def submit_to_slurm(
    pending: list[RunStages], launch_cfg: LaunchConfig, log_dir: Path
) -> tuple[list[StageLaunch], dict[tuple[str, str], submitit.Job]]:
    """Submit every run's pending stages; returns the launches and the jobs by ``(run, stage)``.

    Raises:
        SlurmSubmissionError: no Slurm here (no ``srun``), or ``sbatch`` failed (no controller, a bad
            partition or account); jobs submitted before the failure stay submitted and recorded.
    """
    try:
        return _submit_groups(pending, launch_cfg, log_dir)
    except submitit.core.utils.FailedSubmissionError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "sbatch:" in line or "error" in line.lower()), lines[-1] if lines
                      else "sbatch failed")  # fmt: skip
        raise SlurmSubmissionError(
            f"Slurm refused the submission ({reason.strip()[:300]}). Check that the controller answers (`sinfo`) "
            "and that launch.partition / launch.account exist (--set launch.partition=...), or run here with "
            "--executor local."
        ) from None
    except RuntimeError as error:
        if "srun" not in str(error):
            raise
        raise SlurmSubmissionError(
            "--executor slurm needs a Slurm cluster, but `srun` is not on PATH here: run from a login node of "
            "the cluster, or run here with --executor local."
        ) from None


def _submit_groups(
    pending: list[RunStages], launch_cfg: LaunchConfig, log_dir: Path
) -> tuple[list[StageLaunch], dict[tuple[str, str], submitit.Job]]:
    groups: dict[tuple[str, ...], list[RunStages]] = defaultdict(list)
    for run, stages in pending:
        groups[tuple(stage.name for stage in stages)].append((run, stages))
    launches: list[StageLaunch] = []
    jobs: dict[tuple[str, str], submitit.Job] = {}
    for stage_names, members in groups.items():
        group_launches, group_jobs = _submit_group(stage_names, members, launch_cfg, log_dir)
        launches += group_launches
        jobs.update(group_jobs)
    return launches, jobs


def _submit_group(
    stage_names: tuple[str, ...], members: list[RunStages], launch_cfg: LaunchConfig, log_dir: Path
) -> tuple[list[StageLaunch], dict[tuple[str, str], submitit.Job]]:
    """Submit the stages of runs that share their pending stages, one job (array) per stage."""
    launches, jobs = [], {}
    # A fresh executor per group: submitit keeps parameters between submissions and cannot unset one.
    job_name = members[0][0].name if len(members) == 1 else f"array-{len(members)}"
    executor = make_slurm_executor(launch_cfg, log_dir, job_name)
    previous: list[submitit.Job] = []
    for index, stage_name in enumerate(stage_names):
        dependency = _dependency(previous)
        executor.update_parameters(name=f"{job_name}.{stage_name}", slurm_dependency=dependency)
        stage_jobs = [StageJob(run.name, run.run_dir, stages[index]) for run, stages in members]
        if len(stage_jobs) == 1:
            submitted = [executor.submit(stage_jobs[0])]
        else:
            with executor.batch():
                submitted = [executor.submit(stage_job) for stage_job in stage_jobs]
        for (run, _), job in zip(members, submitted):
            launches.append(_record_submission(run, stage_name, job, log_dir, dependency or ""))
            jobs[(run.name, stage_name)] = job
        logger.info(
            "submitted %s of %d run(s) as job %s%s",
            stage_name,
            len(members),
            submitted[0].job_id.split("_")[0],
            f" ({dependency})" if dependency else "",
        )
        previous = submitted
    return launches, jobs


def _dependency(previous: list[submitit.Job]) -> str | None:
    """``afterok:<id>`` after a single job, ``aftercorr:<array id>`` after an array, None for a first stage."""
    if not previous:
        return None
    if len(previous) == 1:
        return f"afterok:{previous[0].job_id}"
    return f"aftercorr:{previous[0].job_id.split('_')[0]}"


def _record_submission(run: RunSpec, stage: str, job: submitit.Job, log_dir: Path, dependency: str) -> StageLaunch:
    record = LaunchRecord(
        run=run.name,
        stage=stage,
        executor="slurm",
        job_id=job.job_id,
        stdout=str(job.paths.stdout),
        stderr=str(job.paths.stderr),
        submitted_at=now_iso(),
        folder=str(log_dir),
        dependency=dependency,
    )
    write_launch_record(run.run_dir, record)
    return StageLaunch(run.name, stage, SUBMITTED, job.job_id, Path(record.stderr))
