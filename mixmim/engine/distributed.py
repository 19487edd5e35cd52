"""Distributed setup from torchrun or Slurm environment variables, and small collective helpers.

The process group is initialised only when the world size is above 1 (``WORLD_SIZE`` from torchrun, else
``SLURM_NTASKS`` with ``SLURM_PROCID``/``SLURM_LOCALID``); a single process never touches
``torch.distributed``. Under Slurm without torchrun, the ranks meet where :func:`mixmim.runs.rendezvous.rendezvous`
says (the environment's ``MASTER_ADDR``/``MASTER_PORT``, else the job's first host and a port derived from the
job id: the same rule as the Slurm launcher's).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mixmim.runs.rendezvous import rendezvous

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_from_variables(environ: dict[str, str] | None = None) -> DistEnv:
    """The rank layout described by torchrun's (preferred) or Slurm's environment variables."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env:
        return DistEnv(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return DistEnv()


def init_distributed() -> DistEnv:
    """Initialise the default process group when the world size is above 1 (NCCL on GPU, else Gloo)."""
    env = env_from_variables()
    if not env.distributed or dist.is_initialized():
        return env
    if "WORLD_SIZE" not in os.environ:  # Slurm: export what torch's env:// init reads
        os.environ.update(rendezvous())
        os.environ.update(RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank))
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    logger.info("process group initialised: rank %d of %d", env.rank, env.world_size)
    return env


def default_device(env: DistEnv) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
    return torch.device("cuda", env.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """``module`` in DDP with gradient buckets that stay as built, so that a resumed run sums like an uninterrupted one.

    DDP all-reduces each bucket's flat gradient buffer, and with 3 or more ranks the collective's sum of one
    element depends on the element's place in the buffer (gloo's ring adds the ranks' values in an order set by
    the chunk the element falls in, and NCCL's ring likely does too; a sum of 2 values is the same in either
    order). Without
    ``find_unused_parameters`` DDP runs its first step with all gradients in one bucket and then regroups them
    in the order they became ready, so a process that resumes at step ``k`` sums step ``k + 1`` in other
    groups than the uninterrupted run did: its weights leave it by a few roundings
    (``tests/multiprocess/test_three_ranks.py``). With ``find_unused_parameters=True`` DDP never regroups:
    the buckets (parameters in reverse order, 1 MiB then 25 MiB) are the same at every step of every
    process. The cost is one traversal of the autograd graph per step and an all-reduce of a flag per
    parameter; torch warns about the traversal once per rank when nothing is unused, which is expected here.
    It also lets a step leave parameters without a gradient (COCO: a batch without positive proposals skips
    the mask head). Results of 1 rank (no DDP) and 2 ranks (sums of two) are unchanged.
    """
    return nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=True)  # fmt: skip


def all_reduce_sum(value: float, device: torch.device) -> float:
    """Sum of ``value`` over all ranks (``value`` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all ranks in one collective (``values`` when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_to_main(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0 (``[obj]`` when not distributed; ``[]`` elsewhere)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size() if dist.get_rank() == 0 else []
    dist.gather_object(obj, gathered if dist.get_rank() == 0 else None, dst=0)
    return gathered


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
