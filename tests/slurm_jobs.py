"""Helpers of the tests that run jobs on a real Slurm cluster (tests/slurm/): the pre-training they interrupt,
its checkpoints, the job states accounting kept, weights compared bitwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from experiments.registry import get_experiment
from experiments.spec import Experiment
from mixmim.engine.checkpoint import load_checkpoint


def pretrain_only(steps: int, batch_size: int, epochs: int, checkpoint_every: int) -> Experiment:
    """The smoke debug MixMIM run, pre-training only: ``steps`` optimizer steps of ``batch_size`` per rank, a
    checkpoint every ``checkpoint_every`` steps (long enough to be interrupted mid-run)."""
    exp = get_experiment("smoke", "debug")
    cfg = next(cfg for cfg in exp.runs if cfg.method.name == "mixmim")
    cfg.stages = ["pretrain"]
    cfg.pretrain.batch_size, cfg.pretrain.epochs, cfg.pretrain.max_steps = batch_size, epochs, steps
    cfg.pretrain.checkpoint_every_steps = checkpoint_every
    exp.runs = [cfg]
    return exp


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was written at (-1 while there is none)."""
    if not path.is_file():
        return -1
    return int(load_checkpoint(path)["position"]["global_step"])  # written atomically: always whole


def sacct_states(job_id: str) -> list[str]:
    """Every state the job went through that accounting kept (``-D``: requeued attempts too)."""
    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return [line.split()[0] for line in out.splitlines() if line]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [key for key in a if not torch.equal(a[key], b[key])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ: {differ[:5]}"
