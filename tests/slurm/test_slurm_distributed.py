"""submitit's job environment -> the variables torch.distributed reads; the tasks of one job as one worker."""

from __future__ import annotations

import os
from pathlib import Path
from unittest.mock import ANY

import pytest
import submitit

from mixmim.runs import rundir
from mixmim.runs.rendezvous import master_port
from slurm import StageJob, StageSpec, stage_job
from slurm.distributed import DISTRIBUTED_ENV_VARS, export_distributed_env, torch_distributed_env
from slurm.records import read_error_record
from slurm.stage_job import job_attempt
from slurm.testing import CountingConfig, FailingConfig, count_steps, fail_on_purpose

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
    """This process as task 5 of :data:`SLURM_TASK_ENV`; every variable the code under test writes is restored."""
    for name, value in SLURM_TASK_ENV.items():
        monkeypatch.setenv(name, value)
    for name in (*DISTRIBUTED_ENV_VARS, "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.setenv(name, "")  # recorded, so that the value the test started with comes back
        monkeypatch.delenv(name)


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


# -- the tasks of one job: rank 0 holds the run, the other ranks follow its decision -------------------------


def counting_stage(calls: list[str]) -> StageSpec:
    def fn(cfg: CountingConfig, run_dir: Path) -> dict:
        calls.append(os.environ["RANK"])
        return count_steps(cfg, run_dir)

    return StageSpec("count", fn, CountingConfig(steps=2, sleep_s=0.0))


def test_a_rank_above_zero_runs_once_its_rank_zero_holds_the_run(slurm_task: None, tmp_path: Path) -> None:
    calls: list[str] = []
    lock = rundir.RunLock(tmp_path)
    assert lock.acquire(job=job_attempt())  # what rank 0 of this job does first
    try:
        assert StageJob("run", tmp_path, counting_stage(calls))() == {"steps": 2, "value": ANY}
    finally:
        lock.release()
    assert calls == ["5"]


def test_a_rank_above_zero_returns_the_result_of_a_done_stage(slurm_task: None, tmp_path: Path) -> None:
    rundir.write_result(tmp_path, "count", {"status": "done", "metrics": {"steps": 7}})
    calls: list[str] = []
    assert StageJob("run", tmp_path, counting_stage(calls))() == {"steps": 7}
    assert calls == []


def test_a_rank_above_zero_ignores_a_run_held_by_another_job_or_attempt(
    slurm_task: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage_job, "LOCK_WAIT_S", 1.0)
    calls: list[str] = []
    for other in ("4241.0", "4242.1"):  # another job; this job's rank 0 before a requeue
        lock = rundir.RunLock(tmp_path)
        assert lock.acquire(job=other)
        try:
            with pytest.raises(rundir.RunLockError, match=f"rank 0 of job 4242.0 did not take.*Slurm job {other}"):
                StageJob("run", tmp_path, counting_stage(calls))()
        finally:
            lock.release()
    assert calls == [] and job_attempt() == "4242.0"


def test_a_failing_rank_names_its_own_log(slurm_task: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """srun ends the other tasks of a job when one fails: the failing rank's record says why, in its log."""
    monkeypatch.setenv("SUBMITIT_FOLDER", str(tmp_path / "logs"))
    lock = rundir.RunLock(tmp_path)
    assert lock.acquire(job=job_attempt())
    try:
        for message in ("failing on purpose", "failing after another rank"):  # the second keeps the first's record
            with pytest.raises(RuntimeError, match=message):
                StageJob("run", tmp_path, StageSpec("fail", fail_on_purpose, FailingConfig(message=message)))()
    finally:
        lock.release()
    record = read_error_record(tmp_path, "fail")
    assert record is not None and record["job_id"] == "4242" and "failing on purpose" in record["traceback"]
    assert record["log_path"] == str(tmp_path / "logs" / "4242_5_log.err")
