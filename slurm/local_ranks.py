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
import os
import uuid
from pathlib import Path
from typing import Any

from mixmim import rundir
from slurm.spec import StageSpec

logger = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.5  # how often the agent looks at its ranks (a failed one stops the rest this fast)


def run_stage_in_ranks(run_name: str, run_dir: Path, stage: StageSpec, tasks: int, log_path: Path) -> dict[str, Any]:
    """Run ``stage`` as ``tasks`` local ranks and return rank 0's metrics.

    Raises:
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: a rank failed (the others were
            stopped); its message holds the failed rank's traceback.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=tasks,
        run_id=f"{run_name}-{stage.name}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # torchrun --standalone: the store picks a free port
        max_restarts=0,
        monitor_interval=MONITOR_INTERVAL_S,
        start_method="spawn",
    )
    logger.info("%s/%s: starting %d local ranks", run_name, stage.name, tasks)
    results = elastic_launch(config, stage_rank)(run_name, str(run_dir), stage, str(log_path), tasks)
    return results[0]


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
