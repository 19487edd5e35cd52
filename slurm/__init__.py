"""Launching: run every stage of every run locally or on Slurm (submitit), chained, requeued on preemption.

Model-free (``docs/architecture.md``): it takes stage functions with their configs and run directories,
and imports nothing from ``mixmim`` but ``mixmim.runs.rundir``. The public API::

    launch(runs, launch_cfg, log_dir) -> LaunchReport      # executors: local (default), debug, slurm
    status(runs) -> list[StageStatus]                      # (run, stage, state, log_path)

The local Slurm cluster for tests is started and stopped by ``slurm/cluster/start.sh`` / ``stop.sh``.
"""

from slurm.distributed import export_distributed_env, torch_distributed_env
from slurm.launcher import EXECUTORS, launch
from slurm.report import LaunchReport, StageLaunch
from slurm.spec import RunSpec, StageSpec
from slurm.stage_job import StageJob
from slurm.status import STATES, StageStatus, status
from slurm.submit import SlurmSubmissionError

__all__ = [
    "EXECUTORS",
    "STATES",
    "LaunchReport",
    "RunSpec",
    "SlurmSubmissionError",
    "StageJob",
    "StageLaunch",
    "StageSpec",
    "StageStatus",
    "export_distributed_env",
    "launch",
    "status",
    "torch_distributed_env",
]
