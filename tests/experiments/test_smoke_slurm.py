"""The smoke experiment's debug variant on the real local Slurm cluster: chained stages as job arrays."""

import pytest

from experiments.launching import experiment_dir, launch_experiment
from experiments.registry import get_experiment
from mixmim.runs.rundir import is_done
from slurm.testing import cluster_unavailable_reason


@pytest.mark.slurm
@pytest.mark.slow
def test_smoke_debug_on_slurm(tmp_path):
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    exp = get_experiment("smoke", "debug")
    for cfg in exp.runs:  # every run launches with its own launch section
        cfg.launch.cpus_per_task, cfg.launch.time_min = 1, 30
    report = launch_experiment(exp, tmp_path, "slurm")
    assert report.ok and report.jobs, report.summary()
    report.wait(timeout_s=900)
    root = experiment_dir(tmp_path, exp)
    for cfg in exp.runs:
        for stage in cfg.stages:
            assert is_done(root / cfg.name, stage), f"{cfg.name}/{stage}"
    # a second launch submits nothing: every stage is done
    again = launch_experiment(exp, tmp_path, "slurm")
    assert not again.jobs and all(s.outcome == "skipped" for s in again.stages)
