"""From submitit's job environment to the environment variables ``torch.distributed`` reads.

A multi-GPU stage runs as one Slurm task per GPU (``tasks_per_node = gpus_per_node``); each task learns
its place from submitit's ``JobEnvironment`` and exports it the way ``torchrun`` would, so that the stage
can call ``torch.distributed.init_process_group("nccl")`` with the default ``env://`` method.
"""

from __future__ import annotations

import os

import submitit

from mixmim.runs.rendezvous import rendezvous

DISTRIBUTED_ENV_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def torch_distributed_env(job_env: submitit.JobEnvironment) -> dict[str, str]:
    """``MASTER_ADDR`` and ``MASTER_PORT`` (:func:`mixmim.runs.rendezvous.rendezvous`: the environment's, else the
    job's first node and a port from its job id), ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
    ``LOCAL_WORLD_SIZE`` for this task."""
    return {
        **rendezvous(),
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
