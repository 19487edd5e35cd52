"""Concurrent launches into one folder (real processes), Ctrl-C, and stages under their run's lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixmim.config import LaunchConfig
from mixmim.runs import rundir
from slurm import RunSpec, StageSpec, launch, status
from slurm.records import read_error_record
from slurm.report import COMPLETED, IN_FLIGHT
from slurm.stage_job import StageJob
from slurm.testing import CountingConfig, count_steps, hold_run_lock

# A launch of three counting runs (each stage logs a "start" event per attempt) into argv[1], as its own process.
LAUNCH = """
import sys, time
from pathlib import Path
from mixmim.config import LaunchConfig
from slurm import RunSpec, StageSpec, launch
from slurm.testing import CountingConfig, count_steps, hold_run_lock
root, steps, sleep_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
runs = [RunSpec(root / f"run{i}", [StageSpec(s, count_steps, CountingConfig(stage=s, steps=steps, sleep_s=sleep_s))
                                   for s in ("first", "second")]) for i in range(3)]
print("launching", flush=True)
if len(sys.argv) > 4:  # wait for the test's go (both processes imported), then a delay of our own
    while not Path(sys.argv[4]).exists():
        time.sleep(0.01)
    time.sleep(float(sys.argv[5]))
try:
    report = launch(runs, LaunchConfig(), root / "_logs")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print(report.summary(), flush=True)
sys.exit(0 if report.ok else 1)
"""


def start_launch(root: Path, steps: int, sleep_s: float, *go: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-c", LAUNCH, str(root), str(steps), str(sleep_s), *go], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def starts(run_dir: Path, stage: str) -> list[dict]:
    return [r for r in rundir.read_jsonl(run_dir / stage / rundir.METRICS_FILE) if r.get("event") == "start"]


@pytest.mark.slow
def test_two_concurrent_launches_share_the_runs_and_train_nothing_twice(tmp_path: Path) -> None:
    go = tmp_path / "go"
    first = start_launch(tmp_path, 20, 0.03, str(go), "0")
    second = start_launch(tmp_path, 20, 0.03, str(go), "0.3")  # starts 0.3 s after the first
    for process in (first, second):
        assert process.stdout is not None and process.stdout.readline().strip() == "launching"
    go.touch()
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    for (_out, err), process in zip(outputs, (first, second)):
        assert process.returncode == 0, err
        assert "Traceback" not in err and "Error" not in err, err
    assert "in-flight" in outputs[0][0] + outputs[1][0]  # at least one launch left a run to the other, and said so
    for i in range(3):
        run_dir = tmp_path / f"run{i}"
        for stage in ("first", "second"):
            assert len(starts(run_dir, stage)) == 1, (run_dir, stage)  # trained once, by one process
            result = rundir.read_result(run_dir, stage)
            assert result is not None and result["metrics"]["steps"] == 20
        assert not list((run_dir / "first").glob(".*.tmp"))
    # one more launch finds everything done
    again = start_launch(tmp_path, steps=20, sleep_s=0.03)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and "6 skipped" in out and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_is_recorded_as_interrupted_and_the_next_launch_resumes(tmp_path: Path) -> None:
    launch_process = start_launch(tmp_path, steps=200, sleep_s=0.02)
    assert launch_process.stdout is not None and launch_process.stdout.readline().strip() == "launching"
    checkpoint = tmp_path / "run0" / "first" / "checkpoint.json"
    deadline = time.monotonic() + 60
    while not checkpoint.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    launch_process.send_signal(signal.SIGINT)
    out, err = launch_process.communicate(timeout=60)
    assert launch_process.returncode == 130 and "interrupted" in out
    error = read_error_record(tmp_path / "run0", "first")
    assert error is not None and error["interrupted"] and "KeyboardInterrupt" in error["traceback"]
    runs = [RunSpec(tmp_path / "run0", [StageSpec("first", count_steps, CountingConfig(stage="first", steps=200))])]
    assert [row.state for row in status(runs)] == ["interrupted"]
    steps_before = json.loads(checkpoint.read_text())["step"]
    assert 0 < steps_before < 200
    cfg = CountingConfig(stage="first", steps=200, sleep_s=0.0)
    report = launch([RunSpec(tmp_path / "run0", [StageSpec("first", count_steps, cfg)])], LaunchConfig(),
                    tmp_path / "_logs")  # fmt: skip
    assert [stage.outcome for stage in report.stages] == [COMPLETED]
    assert [start["step"] for start in starts(tmp_path / "run0", "first")] == [0, steps_before]  # resumed


def test_a_stage_refuses_to_run_while_another_process_holds_its_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = hold_run_lock(run_dir)
    try:
        stage = StageSpec("count", count_steps, CountingConfig(steps=2, sleep_s=0.0))
        with pytest.raises(rundir.RunLockError, match=f"PID {holder.pid}"):
            StageJob("run", run_dir, stage)()
        report = launch([RunSpec(run_dir, [stage])], LaunchConfig(), tmp_path / "logs")
        assert [s.outcome for s in report.stages] == [IN_FLIGHT] and report.ok
        assert "left to another live launch" in report.summary()
    finally:
        holder.kill()
        holder.wait()
    assert not rundir.is_done(run_dir, "count")
    StageJob("run", run_dir, stage)()  # the lock died with its process
    assert rundir.is_done(run_dir, "count")
