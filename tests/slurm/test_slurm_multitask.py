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
from slurm_jobs import assert_bitwise_equal, checkpoint_step, pretrain_only, sacct_states

from experiments.launching import experiment_dir, launch_experiment
from experiments.registry import get_experiment
from experiments.spec import Experiment
from mixmim.engine.checkpoint import ENCODER, LAST, load_checkpoint, load_encoder_state
from mixmim.runs import rundir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

WAIT_S = 900


def two_task_launch(exp: Experiment) -> str:
    """Every run's launch settings as Slurm jobs of 2 tasks with 1 CPU each; the executor to pass."""
    for cfg in exp.runs:
        cfg.launch.tasks_per_node, cfg.launch.cpus_per_task, cfg.launch.time_min = 2, 1, 30
    return "slurm"


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


# The requeue test: a pre-training of REQUEUE_STEPS steps, a checkpoint every CHECKPOINT_STEPS; a job is
# interrupted once its first checkpoint after the start exists, so it resumes from a checkpoint mid-run.
REQUEUE_STEPS, CHECKPOINT_STEPS = 60, 4


def test_a_requeued_two_task_pretraining_resumes_to_the_same_weights(slurm_cluster: None, tmp_path: Path) -> None:
    """Interrupted mid-run, by ``scontrol requeue`` (Slurm kills both ranks and starts the job again) and by a
    preemption (SIGTERM then USR2: rank 0 checkpoints the job and requeues it through submitit), a 2-task job
    resumes from its last checkpoint and ends bitwise equal (CPU) to an uninterrupted 2-task job."""
    names = ("requeued", "preempted", "uninterrupted")
    exps = {name: pretrain_only(REQUEUE_STEPS, 16, 10, CHECKPOINT_STEPS) for name in names}
    reports = {name: launch_experiment(exp, tmp_path / name, two_task_launch(exp)) for name, exp in exps.items()}
    folders = {name: experiment_dir(tmp_path / name, exp) / exp.runs[0].name / "pretrain" for name, exp in exps.items()}
    jobs = {name: next(iter(reports[name].jobs.values())) for name in names}
    for name in ("requeued", "preempted"):
        deadline = time.monotonic() + WAIT_S
        while checkpoint_step(folders[name] / LAST) < CHECKPOINT_STEPS:
            assert time.monotonic() < deadline and not (folders[name] / rundir.RESULT_FILE).exists(), name
            time.sleep(0.2)
        if name == "requeued":
            subprocess.run(["scontrol", "requeue", jobs[name].job_id], check=True)
        else:
            jobs[name]._interrupt()  # what Slurm does on preemption
    for report in reports.values():
        report.wait(timeout_s=WAIT_S)

    reference = folders["uninterrupted"]
    for name in ("requeued", "preempted"):
        job, folder = jobs[name], folders[name]
        assert "REQUEUED" in sacct_states(job.job_id), name
        log = Path(job.paths.stderr).read_text()  # rank 0's log, both attempts
        assert "pretrain resumed from" in log, log[-3000:]
        result, expected = (rundir.read_json(path / rundir.RESULT_FILE)["metrics"] for path in (folder, reference))
        assert result["steps"] == REQUEUE_STEPS and result["loss"] == expected["loss"], (result, expected)
        assert_bitwise_equal(load_encoder_state(folder / ENCODER), load_encoder_state(reference / ENCODER))
        # the whole method (encoder and decoder) in the final checkpoint
        assert_bitwise_equal(load_checkpoint(folder / LAST)["model"], load_checkpoint(reference / LAST)["model"])
    assert "preempted" in Path(jobs["preempted"].paths.stdout).read_text()  # submitit's handler, not a plain kill

