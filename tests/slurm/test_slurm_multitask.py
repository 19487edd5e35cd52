"""Stages as Slurm jobs of 2 tasks (2 gloo ranks on CPU) on the real local cluster (``scripts/slurm-cluster start``).

Each task is a rank (``launch.tasks_per_node=2``, one CPU each: ``launch.cpus_per_task=1``), so a job needs 2
of the cluster's CPUs. Skipped when the cluster is not up.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

from experiments.launching import experiment_dir, launch_experiment
from experiments.registry import get_experiment
from experiments.spec import Experiment
from mixmim import rundir
from mixmim.config import LaunchConfig
from mixmim.engine.checkpoint import ENCODER, LAST, load_checkpoint, load_encoder_state

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

WAIT_S = 900


def two_task_launch(exp: Experiment) -> LaunchConfig:
    """The experiment's launch settings as Slurm jobs of 2 tasks with 1 CPU each."""
    launch_cfg = exp.runs[0].launch
    launch_cfg.executor, launch_cfg.tasks_per_node, launch_cfg.cpus_per_task, launch_cfg.time_min = "slurm", 2, 1, 30
    return launch_cfg


def test_smoke_debug_as_two_task_jobs(slurm_cluster: None, tmp_path: Path) -> None:
    """Every stage of every smoke run finishes as a 2-rank job and records world size 2 with both ranks' batch."""
    exp = get_experiment("smoke", "debug")
    report = launch_experiment(exp, tmp_path, two_task_launch(exp))
    assert report.ok and report.jobs, report.summary()
    report.wait(timeout_s=WAIT_S)
    root = experiment_dir(tmp_path, exp)
    for cfg in exp.runs:
        run_dir = root / cfg.name
        for stage in cfg.stages:
            assert rundir.is_done(run_dir, stage), f"{cfg.name}/{stage}: {report.summary()}"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["world_size"] == 2, cfg.name
        for stage, entry in manifest["stages"].items():
            stage_cfg = getattr(cfg, stage)
            per_rank = stage_cfg.batch_size * getattr(stage_cfg, "accum_iter", 1)
            assert (entry["world_size"], entry["effective_batch"]) == (2, 2 * per_rank), (cfg.name, stage, entry)
        assert manifest["stages"].keys() == set(cfg.stages) - {"tokenizer"}, cfg.name


# The requeue test: a pre-training of REQUEUE_STEPS steps, a checkpoint every CHECKPOINT_STEPS; the job is
# requeued once its first checkpoint after the start exists, so it ends from a checkpoint mid-run.
REQUEUE_STEPS, CHECKPOINT_STEPS = 60, 4


def pretrain_only() -> Experiment:
    """The smoke debug MixMIM run, pre-training only, long enough to be interrupted mid-run."""
    exp = get_experiment("smoke", "debug")
    cfg = next(cfg for cfg in exp.runs if cfg.method.name == "mixmim")
    cfg.stages = ["pretrain"]
    cfg.pretrain.batch_size, cfg.pretrain.epochs, cfg.pretrain.max_steps = 16, 10, REQUEUE_STEPS
    cfg.pretrain.checkpoint_every_steps = CHECKPOINT_STEPS
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


def test_a_requeued_two_task_pretraining_resumes_to_the_same_weights(slurm_cluster: None, tmp_path: Path) -> None:
    """``scontrol requeue`` mid-run: the job restarts both ranks, resumes from its last checkpoint and ends
    bitwise equal (CPU) to an uninterrupted 2-task job."""
    runs = {name: pretrain_only() for name in ("interrupted", "uninterrupted")}
    reports = {name: launch_experiment(exp, tmp_path / name, two_task_launch(exp)) for name, exp in runs.items()}
    run_dirs = {name: experiment_dir(tmp_path / name, exp) / exp.runs[0].name for name, exp in runs.items()}
    (job,) = reports["interrupted"].jobs.values()
    last = run_dirs["interrupted"] / "pretrain" / LAST
    deadline = time.monotonic() + WAIT_S
    while checkpoint_step(last) < CHECKPOINT_STEPS:
        assert time.monotonic() < deadline and not rundir.is_done(run_dirs["interrupted"], "pretrain"), job.paths.stderr
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", job.job_id], check=True)
    for report in reports.values():
        report.wait(timeout_s=WAIT_S)

    assert "REQUEUED" in sacct_states(job.job_id)
    results = {name: rundir.read_result(run_dir, "pretrain") for name, run_dir in run_dirs.items()}
    assert all(result and result["metrics"]["steps"] == REQUEUE_STEPS for result in results.values()), results
    log = Path(job.paths.stderr).read_text()  # rank 0's log, both attempts
    assert "pretrain resumed from" in log, log[-3000:]
    assert results["interrupted"]["metrics"]["loss"] == results["uninterrupted"]["metrics"]["loss"]
    interrupted, uninterrupted = (run_dir / "pretrain" for run_dir in run_dirs.values())
    assert_bitwise_equal(load_encoder_state(interrupted / ENCODER), load_encoder_state(uninterrupted / ENCODER))
    # the whole method (encoder and decoder) in the final checkpoint
    assert_bitwise_equal(load_checkpoint(interrupted / LAST)["model"], load_checkpoint(uninterrupted / LAST)["model"])


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [key for key in a if not torch.equal(a[key], b[key])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ: {differ[:5]}"
