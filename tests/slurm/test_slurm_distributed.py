"""submitit's job environment -> the variables torch.distributed reads."""

from __future__ import annotations

import os

import pytest
import submitit

from mixmim.rendezvous import master_port
from slurm.distributed import export_distributed_env, torch_distributed_env

# Task 5 of a 2-node job with 4 GPUs (tasks) per node, as Slurm describes it to the task.
SLURM_TASK_ENV = {
    "SUBMITIT_EXECUTOR": "slurm",
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "8",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "1",
}


@pytest.fixture
def slurm_task(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SLURM_TASK_ENV.items():
        monkeypatch.setenv(name, value)
    for name in (
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "SLURM_ARRAY_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
    ):
        monkeypatch.delenv(name, raising=False)


def test_job_environment_to_torch_variables(slurm_task: None) -> None:
    env = torch_distributed_env(submitit.JobEnvironment())
    assert env == {
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(master_port("4242")),
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
    }


def test_export_sets_os_environ_in_a_job(slurm_task: None) -> None:
    env = export_distributed_env()
    assert env["RANK"] == os.environ["RANK"] == "5"
    assert os.environ["MASTER_ADDR"] == "gpu07"


def test_export_outside_a_job_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert export_distributed_env() == {}
    assert "RANK" not in os.environ


def test_the_environment_chooses_the_rendezvous(slurm_task: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_PORT", "29511")
    env = export_distributed_env()
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("gpu07", "29511")


def test_an_array_task_meets_at_its_own_port(slurm_task: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each element of an array has its own SLURM_JOB_ID (submitit's job id is ``<array>_<index>``)."""
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert torch_distributed_env(submitit.JobEnvironment())["MASTER_PORT"] == str(master_port("4242"))
