"""From submitit's job environment to the environment variables ``torch.distributed`` reads.

A multi-GPU stage runs as one Slurm task per GPU (``tasks_per_node = gpus_per_node``); each task learns
its place from submitit's ``JobEnvironment`` and exports it the way ``torchrun`` would, so that the stage
can call ``torch.distributed.init_process_group("nccl")`` with the default ``env://`` method.
"""

from __future__ import annotations

import os
import re

import submitit

DISTRIBUTED_ENV_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
_PORT_BASE, _PORT_SPAN = 20000, 20000


def master_port(job_id: str) -> int:
    """A rendezvous port derived from the job id, in [20000, 40000): every task of a job agrees on it
    without talking, and two jobs sharing a node rarely collide."""
    digits = re.sub(r"\D", "", job_id) or "0"
    return _PORT_BASE + int(digits) % _PORT_SPAN


def torch_distributed_env(job_env: submitit.JobEnvironment) -> dict[str, str]:
    """``MASTER_ADDR`` (the job's first node), ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
    and ``LOCAL_WORLD_SIZE`` for this task."""
    return {
        "MASTER_ADDR": job_env.hostnames[0],
        "MASTER_PORT": str(master_port(job_env.job_id)),
        "RANK": str(job_env.global_rank),
        "WORLD_SIZE": str(job_env.num_tasks),
        "LOCAL_RANK": str(job_env.local_rank),
        "LOCAL_WORLD_SIZE": str(max(1, job_env.num_tasks // job_env.num_nodes)),
    }


def in_submitit_job() -> bool:
    """True inside a job started by submitit (Slurm or its local executor)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def export_distributed_env() -> dict[str, str]:
    """Inside a submitit job, set the ``torch.distributed`` variables in ``os.environ`` and return them;
    elsewhere change nothing and return ``{}``."""
    if not in_submitit_job():
        return {}
    env = torch_distributed_env(submitit.JobEnvironment())
    os.environ.update(env)
    return env
