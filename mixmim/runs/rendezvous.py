"""Where the ranks of one job meet: ``MASTER_ADDR`` and ``MASTER_PORT`` for ``torch.distributed``'s ``env://``.

The one rule of the suite, used by the engine (:func:`mixmim.engine.distributed.init_distributed`, a task
started by ``srun`` without torchrun) and by the Slurm launcher (:mod:`slurm.distributed`, a task started
by submitit):

- ``MASTER_ADDR`` / ``MASTER_PORT`` already in the environment win (set by the user, or by torchrun);
- else the address is the first host of the job's node list (``SLURM_JOB_NODELIST``) and the port is
  derived from the job id (``SLURM_JOB_ID``, unique per array element): every task of a job computes the
  same pair without talking, and two jobs sharing a node get different ports unless their ids differ by a
  multiple of :data:`PORT_SPAN`.

Torch-free and submitit-free (standard library only), so that ``slurm`` (which must not load torch: ``import
slurm`` stays cheap) and ``mixmim.engine`` share it; it sits in ``mixmim`` because ``slurm`` may import
from the core library below it, never the other way round.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from mixmim.runs.hostlist import expand

PORT_BASE, PORT_SPAN = 20000, 20000  # ports [20000, 40000): above the well-known ones, below Linux's ephemeral


def master_port(job_id: str) -> int:
    """A port in ``[PORT_BASE, PORT_BASE + PORT_SPAN)`` from a Slurm job id (its digits: ``"123_4"`` -> 1234).

    Raises:
        ValueError: the job id holds no digit.
    """
    digits = re.sub(r"\D", "", job_id)
    if not digits:
        raise ValueError(f"cannot derive a rendezvous port from job id {job_id!r}: set MASTER_PORT")
    return PORT_BASE + int(digits) % PORT_SPAN


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list, as ``scontrol show hostnames`` would list it first.

    ``gpu[07-08,10],cpu1`` -> ``gpu07``; ``rack[1-2]-n[3-4]`` -> ``rack1-n3``; ``node5`` -> ``node5``.

    Raises:
        ValueError: an empty host list.
    """
    hosts = expand(nodelist)
    host = hosts[0] if hosts else ""
    if not host:
        raise ValueError(f"empty Slurm node list {nodelist!r}: set MASTER_ADDR and MASTER_PORT")
    return host


def rendezvous(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"MASTER_ADDR": ..., "MASTER_PORT": ...}`` for this job (``environ`` defaults to ``os.environ``).

    Raises:
        RuntimeError: neither the variables themselves nor a Slurm job's ``SLURM_JOB_ID`` and
            ``SLURM_JOB_NODELIST`` are in the environment.
    """
    env = os.environ if environ is None else environ
    try:
        addr = env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"])
        port = env.get("MASTER_PORT") or str(master_port(env["SLURM_JOB_ID"]))
    except KeyError as error:
        raise RuntimeError(
            f"cannot find where the ranks meet: {error.args[0]} is not set (not in a Slurm job?); set MASTER_ADDR "
            "and MASTER_PORT, or start the ranks with torchrun"
        ) from None
    except ValueError as error:
        raise RuntimeError(f"cannot find where the ranks meet: {error}") from None
    return {"MASTER_ADDR": addr, "MASTER_PORT": port}


def tasks_per_node(launch: Any) -> int:
    """Processes (ranks) a stage runs per node: ``launch.tasks_per_node``, else one per GPU, else one (``launch``:
    a :class:`mixmim.config.LaunchConfig`). The rule exists here once: the config, the local launcher and the
    Slurm executor read it."""
    return launch.tasks_per_node or max(1, launch.gpus_per_node)
