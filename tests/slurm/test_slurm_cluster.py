"""The launcher on a real Slurm cluster (``scripts/slurm-cluster start``); skipped when it is not up.

Every scenario is submitted once, at the start of the module, so that the jobs run side by side (each job
pays a Python start-up); each test then checks one behaviour. The preemption test comes first: it must
interrupt its jobs while they run. Time limits are 20 minutes: with 10 minutes or less submitit counts
every USR2 as a timeout rather than a preemption.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_jobs import sacct_states

from mixmim.config import LaunchConfig
from mixmim.runs import rundir
from mixmim.runs.rendezvous import master_port
from slurm import LaunchReport, RunSpec, StageSpec, launch, status
from slurm.records import read_launch_record
from slurm.report import IN_FLIGHT, SKIPPED, SUBMITTED
from slurm.testing import (
    CountingConfig,
    EnvironmentConfig,
    FailingConfig,
    count_steps,
    fail_on_purpose,
    record_environment,
)

pytestmark = pytest.mark.slurm

SLURM = LaunchConfig(executor="slurm", time_min=20, cpus_per_task=1)
PREEMPT_STEPS, PREEMPT_AT, STEP_S = 40, 4, 0.25  # 10 s of counting; interrupted after about 1 s
WAIT_S = 150


@dataclass
class Scenario:
    logs: Path
    chain: list[RunSpec]
    failing: list[RunSpec]
    grid: list[RunSpec]
    preempt: list[RunSpec]
    reports: dict[str, LaunchReport]


def count(steps: int, sleep_s: float = 0.0) -> StageSpec:
    return StageSpec("count", count_steps, CountingConfig(steps=steps, sleep_s=sleep_s))


ENV = StageSpec("env", record_environment, EnvironmentConfig())


@pytest.fixture(scope="module")
def scenario(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("cluster")
    runs = {
        "chain": [RunSpec(root / "chain", [count(3), ENV])],
        "failing": [RunSpec(root / "failing", [StageSpec("fail", fail_on_purpose, FailingConfig()), ENV])],
        # Same stage names, so one array per stage; grid1's first stage fails.
        "grid": [
            RunSpec(root / "grid0", [count(3), ENV]),
            RunSpec(root / "grid1", [StageSpec("count", fail_on_purpose, FailingConfig(stage="count")), ENV]),
            RunSpec(root / "grid2", [count(4), ENV]),
        ],
        "preempt": [RunSpec(root / f"preempt{i}", [count(PREEMPT_STEPS, STEP_S)]) for i in range(2)],
    }
    logs = root / "logs"
    reports = {name: launch(group, SLURM, logs) for name, group in reversed(runs.items())}
    return Scenario(logs=logs, reports=reports, **runs)


def wait_for_step(run: RunSpec, step: int, timeout_s: float = WAIT_S) -> None:
    checkpoint = run.run_dir / "count" / "checkpoint.json"
    deadline = time.monotonic() + timeout_s
    while not (checkpoint.is_file() and json.loads(checkpoint.read_text())["step"] >= step):
        assert time.monotonic() < deadline, f"{run.name} never reached step {step}"
        time.sleep(0.1)


def reference_result(tmp_path: Path) -> dict:
    run = RunSpec(tmp_path / "uninterrupted", [count(PREEMPT_STEPS)])
    launch([run], LaunchConfig(executor="local"), tmp_path / "logs")
    return rundir.read_result(run.run_dir, "count")  # type: ignore[return-value]


def test_preempted_stage_resumes_from_its_checkpoint(scenario: Scenario, tmp_path: Path) -> None:
    runs, report = scenario.preempt, scenario.reports["preempt"]
    again = launch(runs, SLURM, scenario.logs)  # while queued or running: nothing is submitted twice
    assert [stage.outcome for stage in again.stages] == [IN_FLIGHT, IN_FLIGHT] and not again.jobs
    for run in runs:
        wait_for_step(run, PREEMPT_AT)
    signalled, requeued = (report.jobs[(run.name, "count")] for run in runs)
    signalled._interrupt()  # what Slurm does on preemption: SIGTERM, then USR2 -> checkpoint() and requeue
    subprocess.run(["scontrol", "requeue", requeued.job_id], check=True)  # an outright requeue, no signal
    assert {row.state for row in status(runs)} <= {"running", "pending"}
    report.wait(timeout_s=WAIT_S)

    expected = reference_result(tmp_path)
    for run, job in zip(runs, (signalled, requeued)):
        assert rundir.read_result(run.run_dir, "count") == expected
        starts = [r["step"] for r in rundir.read_jsonl(run.run_dir / "count" / rundir.METRICS_FILE)]
        assert len(starts) == 2 and starts[0] == 0 and PREEMPT_AT <= starts[1] < PREEMPT_STEPS, starts
        assert "REQUEUED" in sacct_states(job.job_id)
    assert "preempted" in Path(signalled.paths.stdout).read_text()  # submitit's handler, not a plain kill


def test_stages_chain_with_afterok(scenario: Scenario) -> None:
    (run,) = scenario.chain
    scenario.reports["chain"].wait(timeout_s=WAIT_S)
    assert [row.state for row in status([run])] == ["done", "done"]
    first, second = read_launch_record(run.run_dir, "count"), read_launch_record(run.run_dir, "env")
    assert first is not None and second is not None
    assert second.dependency == f"afterok:{first.job_id}"
    env = rundir.read_result(run.run_dir, "env")["metrics"]  # type: ignore[index]
    assert env["SLURM_JOB_ID"] == second.job_id
    assert env == {
        "MASTER_ADDR": "localhost",
        "MASTER_PORT": str(master_port(second.job_id)),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "SLURM_JOB_ID": second.job_id,
    }


def test_failing_stage_reports_its_log_and_stops_its_chain(scenario: Scenario) -> None:
    (run,) = scenario.failing
    scenario.reports["failing"].wait(timeout_s=WAIT_S)
    failed, blocked = status([run])
    assert (failed.state, blocked.state) == ("failed", "blocked")
    assert failed.log_path is not None and "RuntimeError: failing on purpose" in failed.log_path.read_text()
    after = read_launch_record(run.run_dir, "env")
    assert after is not None and sacct_states(after.job_id)[-1] == "CANCELLED"
    assert not rundir.is_done(run.run_dir, "env")


def test_a_grid_runs_as_arrays_and_a_failure_stays_in_its_run(scenario: Scenario) -> None:
    report = scenario.reports["grid"]
    assert [stage.job_id.split("_")[1] for stage in report.stages] == ["0", "0", "1", "1", "2", "2"]
    report.wait(timeout_s=WAIT_S)
    states = [(row.run, row.stage, row.state) for row in status(scenario.grid)]
    assert states == [
        ("grid0", "count", "done"),
        ("grid0", "env", "done"),
        ("grid1", "count", "failed"),
        ("grid1", "env", "blocked"),
        ("grid2", "count", "done"),
        ("grid2", "env", "done"),
    ]
    assert rundir.read_result(scenario.grid[2].run_dir, "count")["metrics"]["steps"] == 4  # type: ignore[index]


def test_relaunching_finished_runs_submits_nothing(scenario: Scenario) -> None:
    finished = [*scenario.chain, scenario.grid[0], scenario.grid[2]]
    for report in scenario.reports.values():
        report.wait(timeout_s=WAIT_S)
    report = launch(finished, SLURM, scenario.logs)
    assert {stage.outcome for stage in report.stages} == {SKIPPED} and not report.jobs
    retried = launch(scenario.failing, SLURM, scenario.logs)  # a failed run is submitted again
    assert [stage.outcome for stage in retried.stages] == [SUBMITTED, SUBMITTED]
    for job in retried.jobs.values():
        job.cancel(check=False)
