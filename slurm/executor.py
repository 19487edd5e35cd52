"""From a ``LaunchConfig`` to a submitit executor for Slurm.

``launch.tasks_per_node`` Slurm tasks per node (default: one per GPU, or one without GPUs) for DDP; with no
GPUs no GPU flag is passed at all (some clusters reject ``--gpus-per-node=0``). ``slurm_extra`` holds extra
sbatch options (``{"mail-type": "END"}`` becomes ``#SBATCH --mail-type=END``). A job of several tasks runs
them with ``srun --kill-on-bad-exit=1``: a rank that fails ends its job at once, instead of leaving the
others waiting in a collective until the process group's timeout (30 minutes). Each task runs
``launch.cpus_per_task`` CPU threads (``OMP_NUM_THREADS``, unless the environment sets it), as ``torchrun``
shares a node's cores between its ranks: where Slurm does not bind tasks to their CPUs, every rank would
otherwise start a thread per core of the node.

A job over ``launch.nodes`` nodes is one submitit job (``--nodes``, ``--ntasks-per-node``); each task learns its
rank and the rendezvous from Slurm's variables (:mod:`slurm.distributed`). ``launch.network_interface``, when
set, is exported to every task as ``GLOO_SOCKET_IFNAME`` and ``NCCL_SOCKET_IFNAME`` (the interface of the
nodes' shared network); empty, the job's environment decides.
"""

from __future__ import annotations

import shlex
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from mixmim.runs.rendezvous import tasks_per_node

if TYPE_CHECKING:  # slurm/ depends on mixmim.runs.rundir only; the config type is for readers and checkers
    from mixmim.config import LaunchConfig

# A job whose dependency can never be met (an earlier stage failed) is cancelled instead of pending forever.
DEFAULT_SBATCH_EXTRA = {"kill-on-invalid-dep": "yes"}


def executor_parameters(launch_cfg: LaunchConfig, job_name: str) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` keyword arguments for ``launch_cfg``; empty fields are left out."""
    gpus = launch_cfg.gpus_per_node
    tasks = tasks_per_node(launch_cfg)
    params: dict[str, Any] = {
        "name": job_name,
        "timeout_min": launch_cfg.time_min,
        "nodes": launch_cfg.nodes,
        "tasks_per_node": tasks,
        "cpus_per_task": launch_cfg.cpus_per_task,
    }
    if tasks * launch_cfg.nodes > 1:
        params["slurm_srun_args"] = ["--kill-on-bad-exit=1"]
    params["slurm_setup"] = [f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{launch_cfg.cpus_per_task}}}"]
    params["slurm_setup"] += interface_exports(launch_cfg.network_interface)
    if gpus > 0:
        params["gpus_per_node"] = gpus
    if launch_cfg.mem_gb > 0:
        params["mem_gb"] = launch_cfg.mem_gb
    for field in ("partition", "account", "qos", "constraint"):
        value = getattr(launch_cfg, field)
        if value:
            params[f"slurm_{field}"] = value
    params["slurm_additional_parameters"] = {**DEFAULT_SBATCH_EXTRA, **dict(launch_cfg.slurm_extra)}
    return params


def interface_exports(interface: str) -> list[str]:
    """The job script's lines that bind gloo and NCCL to ``interface`` (none when it is empty; the config check
    refuses names that are not interface names: ``mixmim.config.INTERFACE_NAME``)."""
    if not interface:
        return []
    name = shlex.quote(interface)
    return [f"export GLOO_SOCKET_IFNAME={name} NCCL_SOCKET_IFNAME={name}"]


def make_slurm_executor(launch_cfg: LaunchConfig, folder: Path, job_name: str) -> submitit.AutoExecutor:
    """A Slurm executor writing its scripts, pickles and logs to ``folder`` (made readable by the jobs).

    Raises:
        RuntimeError: from submitit when ``srun`` is not on PATH (not on a Slurm cluster).
    """
    make_job_folder(folder)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=launch_cfg.max_num_timeout)
    executor.update_parameters(**executor_parameters(launch_cfg, job_name))
    return executor


def make_job_folder(folder: Path) -> None:
    """Create submitit's job folder, readable and searchable by everyone (the job's user may differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    readable = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # 0o755
    mode = folder.stat().st_mode
    if mode & readable != readable:
        folder.chmod(mode | readable)
