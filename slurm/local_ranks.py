"""Several ranks of one stage on this machine, through ``torch.distributed.run``'s launcher API.

The local executor with ``launch.tasks_per_node = W > 1`` runs a stage as ``W`` processes started by
``torch.distributed.launcher.api.elastic_launch``, the library behind ``torchrun --standalone``: a c10d
rendezvous on ``localhost:0`` (an ephemeral port chosen by the store, so two launches never collide),
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` exported to each rank, and the stage
initialises its process group from them (gloo on CPU, NCCL on GPUs: ``mixmim.engine.distributed``). No
restarts: when one rank fails, the agent stops the others and raises ``ChildFailedError`` naming the failed
rank and its traceback, so an exception on one rank never leaves the others waiting at a barrier.

The launching process keeps the run's lock; the ranks do not take it. Rank 0 writes what a stage writes
(results, manifests, metrics); every rank logs to the stage's log file, prefixed with its rank.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixmim.runs import rundir
from slurm.spec import StageSpec

logger = logging.getLogger(__name__)

START_METHOD = "forkserver"
PRELOAD = ("torch", "torch.distributed")  # imported once by the fork server, not by every rank of every stage
AGENT_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "ROLE_RANK", "ROLE_NAME", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                   "GROUP_WORLD_SIZE", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                   "TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING")  # fmt: skip
MONITOR_INTERVAL_S = 0.5  # how often the agent looks at its ranks (a failed one stops the rest this fast)


def run_stage_in_ranks(run_name: str, run_dir: Path, stage: StageSpec, tasks: int, log_path: Path) -> dict[str, Any]:
    """Run ``stage`` as ``tasks`` local ranks and return rank 0's metrics.

    Raises:
        ValueError: more ranks than this machine's GPUs (each rank takes one).
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: a rank failed (the others were
            stopped); its message holds the failed rank's traceback.
    """
    check_gpus_for(tasks)
    logger.info("%s/%s: starting %d local ranks", run_name, stage.name, tasks)
    args = (run_name, str(run_dir), stage, str(log_path), tasks)
    return launch_local_ranks(stage_rank, args, tasks, f"{run_name}-{stage.name}", stage.preload)[0]


def check_gpus_for(tasks: int) -> None:
    """With CUDA, every rank needs its own GPU.

    Raises:
        ValueError: ``tasks`` exceeds the visible GPUs; the message says what to set.
    """
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 < gpus < tasks:
        raise ValueError(f"{tasks} local ranks (launch.tasks_per_node, default launch.gpus_per_node) but this machine "
                         f"has {gpus} GPU(s): pass --set launch.tasks_per_node={gpus}")  # fmt: skip


def launch_local_ranks(fn: Callable[..., Any], args: tuple[Any, ...], tasks: int, name: str,
                       preload: tuple[str, ...] = ()) -> dict[int, Any]:  # fmt: skip
    """``fn(*args)`` in ``tasks`` processes on this machine, as torchrun --standalone would run it.

    The ranks are forked from a fork server that has imported torch once (:data:`PRELOAD`, ``preload`` and
    ``fn``'s module; the fork server of this process starts at its first launch and keeps its imports), not
    spawned afresh: starting two ranks takes about a second instead of 10-20 s of imports on a loaded 2-core
    machine, for every stage. Each rank runs in this process's current environment (:func:`_in_environment`; the fork
    server's own is that of its start).

    Args:
        fn: a module-level function (pickled by reference); it finds its rank in ``RANK``/``WORLD_SIZE``.
        name: prefix of the rendezvous id (a fresh suffix is added).
        preload: more modules for the fork server to import (at this process's first launch only).

    Returns:
        ``{rank: fn's return value}``.

    Raises:
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: a rank failed (the others stopped).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    multiprocessing.get_context(START_METHOD).set_forkserver_preload([*PRELOAD, *preload, fn.__module__])
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=tasks,
        run_id=f"{name}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # torchrun --standalone: the store picks a free port
        max_restarts=0,
        monitor_interval=MONITOR_INTERVAL_S,
        start_method=START_METHOD,
    )
    return elastic_launch(config, _in_environment)(dict(os.environ), fn, *args)


def _in_environment(environ: dict[str, str], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with ``environ`` as the environment, plus the variables the elastic agent set."""
    agent = {k: v for k, v in os.environ.items() if k in AGENT_VARIABLES or k.startswith("TORCHELASTIC_")}
    os.environ.clear()
    os.environ.update({**environ, **agent})
    return fn(*args)


def stage_rank(run_name: str, run_dir: str, stage: StageSpec, log_path: str, tasks: int) -> dict[str, Any]:
    """The body of one rank (a spawned process): log to the stage's file, run the stage unless it is done."""
    rank = int(os.environ.get("RANK", "0"))
    _log_to_file(Path(log_path), rank)
    _share_cpu_threads(tasks)
    if rundir.is_done(run_dir, stage.name):
        logger.info("%s/%s is done: nothing to run", run_name, stage.name)
        result = rundir.read_result(run_dir, stage.name) or {}
        return result.get("metrics", result)
    logger.info("%s/%s: rank %d of %d starting", run_name, stage.name, rank, tasks)
    return stage.fn(stage.cfg, Path(run_dir))


def _log_to_file(path: Path, rank: int) -> None:
    """INFO and above of every logger to ``path`` (appending), each line naming the rank."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _share_cpu_threads(tasks: int) -> None:
    """Give each rank its share of the cores (as torchrun does through ``OMP_NUM_THREADS``), unless set."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // tasks))
