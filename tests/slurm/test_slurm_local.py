"""The local and debug executors: order, skipping what is done, resuming, failures, status."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from mixmim.config import LaunchConfig
from mixmim.runs import rundir
from slurm import RunSpec, StageSpec, launch, status
from slurm.records import LaunchRecord, read_launch_record, write_launch_record
from slurm.report import BLOCKED, COMPLETED, FAILED, IN_FLIGHT, SKIPPED
from slurm.testing import (
    CountingConfig,
    FailingConfig,
    OrderConfig,
    count_steps,
    fail_on_purpose,
    hold_run_lock,
    mark_order,
)

LOCAL = LaunchConfig()


def ordered_run(run_dir: Path, names: list[str]) -> RunSpec:
    return RunSpec(run_dir, [StageSpec(name, mark_order, OrderConfig(stage=name)) for name in names])


def failing_run(run_dir: Path) -> RunSpec:
    return RunSpec(
        run_dir,
        [
            StageSpec("fail", fail_on_purpose, FailingConfig()),
            StageSpec("after", mark_order, OrderConfig(stage="after")),
        ],
    )


def counting_run(run_dir: Path, steps: int = 5) -> RunSpec:
    return RunSpec(run_dir, [StageSpec("count", count_steps, CountingConfig(steps=steps, sleep_s=0.0))])


def test_stages_run_in_order(tmp_path: Path) -> None:
    run = ordered_run(tmp_path / "run", ["pretrain", "linprobe", "knn"])
    report = launch([run], LOCAL, tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [COMPLETED] * 3
    assert (run.run_dir / "order.txt").read_text().split() == ["pretrain", "linprobe", "knn"]
    assert [row.state for row in status([run])] == ["done"] * 3
    record = read_launch_record(run.run_dir, "knn")
    assert record is not None and record.executor == "local" and Path(record.stdout).is_file()


def test_done_stages_are_skipped_and_never_rewritten(tmp_path: Path) -> None:
    run = ordered_run(tmp_path / "run", ["a", "b"])
    launch([run], LOCAL, tmp_path / "logs")
    result = run.run_dir / "a" / rundir.RESULT_FILE
    before = result.stat().st_mtime_ns
    report = launch([run], LOCAL, tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [SKIPPED, SKIPPED]
    assert result.stat().st_mtime_ns == before
    assert (run.run_dir / "order.txt").read_text().split() == ["a", "b"]
    assert len(rundir.read_jsonl(run.run_dir / "a" / "launches.jsonl")) == 1


def test_only_missing_stages_run(tmp_path: Path) -> None:
    run = ordered_run(tmp_path / "run", ["a", "b", "c"])
    rundir.write_result(run.run_dir, "a", {"status": "done", "metrics": {}})
    report = launch([run], LOCAL, tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [SKIPPED, COMPLETED, COMPLETED]
    assert (run.run_dir / "order.txt").read_text().split() == ["b", "c"]


def test_partly_done_stage_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    reference = counting_run(tmp_path / "reference", steps=8)
    launch([reference], LOCAL, tmp_path / "logs")
    partial = counting_run(tmp_path / "partial", steps=8)
    launch([counting_run(partial.run_dir, steps=3)], LOCAL, tmp_path / "logs")  # leaves checkpoint at step 3
    (partial.run_dir / "count" / rundir.RESULT_FILE).unlink()  # as if killed after step 3
    launch([partial], LOCAL, tmp_path / "logs")
    starts = [r["step"] for r in rundir.read_jsonl(partial.run_dir / "count" / rundir.METRICS_FILE)]
    assert starts == [0, 3]
    assert rundir.read_result(partial.run_dir, "count") == rundir.read_result(reference.run_dir, "count")


def test_failure_is_recorded_and_stops_only_its_run(tmp_path: Path) -> None:
    bad, good = failing_run(tmp_path / "bad"), ordered_run(tmp_path / "good", ["a"])
    report = launch([bad, good], LOCAL, tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [FAILED, BLOCKED, COMPLETED]
    assert not report.ok and "failing on purpose" in report.summary()
    error = json.loads((bad.run_dir / "fail" / "error.json").read_text())
    assert "RuntimeError: failing on purpose" in error["traceback"]
    assert "failing on purpose" in Path(error["log_path"]).read_text()
    assert not (bad.run_dir / "after").exists()
    rows = status([bad, good])
    assert [(row.stage, row.state) for row in rows] == [("fail", "failed"), ("after", "blocked"), ("a", "done")]
    assert rows[0].log_path == Path(error["log_path"])


def test_debug_executor_raises_at_the_first_failure(tmp_path: Path) -> None:
    bad, later = failing_run(tmp_path / "bad"), ordered_run(tmp_path / "later", ["a"])
    with pytest.raises(RuntimeError, match="failing on purpose"):
        launch([bad, later], LaunchConfig(executor="debug"), tmp_path / "logs")
    assert (bad.run_dir / "fail" / "error.json").is_file()
    assert not (later.run_dir / "order.txt").exists()


def test_status_before_any_launch_is_pending(tmp_path: Path) -> None:
    run = ordered_run(tmp_path / "run", ["a", "b"])
    assert [(row.state, row.log_path) for row in status([run])] == [("pending", None), ("pending", None)]


def _local_record(run: RunSpec, stage: str, pid: int, host: str | None = None) -> LaunchRecord:
    return LaunchRecord(
        run=run.name,
        stage=stage,
        executor="local",
        job_id="local-test",
        stdout="/dev/null",
        stderr="/dev/null",
        submitted_at="2024-01-01T00:00:00+00:00",
        host=host or socket.gethostname(),
        pid=pid,
    )


def test_a_run_held_by_a_live_process_is_left_alone_and_resumed_once_it_dies(tmp_path: Path) -> None:
    run = ordered_run(tmp_path / "run", ["a", "b"])
    holder = hold_run_lock(run.run_dir)  # another process, e.g. a launch started earlier
    try:
        write_launch_record(run.run_dir, _local_record(run, "a", holder.pid))
        assert status([run])[0].state == "running"
        report = launch([run], LOCAL, tmp_path / "logs")
        assert [stage.outcome for stage in report.stages] == [IN_FLIGHT, IN_FLIGHT] and report.ok
        assert not (run.run_dir / "order.txt").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    assert status([run])[0].state == "failed"  # its process ended without a result
    report = launch([run], LOCAL, tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [COMPLETED, COMPLETED]


@pytest.mark.parametrize("host, pid", [("container-before-restart", 1), (None, 1)])
def test_a_stale_record_naming_another_host_or_a_reused_pid_resumes(tmp_path: Path, host, pid) -> None:
    """Liveness is the lock: a record of a dead launch never blocks, whatever host or (live) PID it names."""
    run = ordered_run(tmp_path / "run", ["a", "b"])
    write_launch_record(run.run_dir, _local_record(run, "a", pid, host))  # PID 1 is alive (init)
    assert status([run])[0].state == "failed"
    report = launch([run], LOCAL, tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [COMPLETED, COMPLETED]


def test_bad_launches_are_rejected(tmp_path: Path) -> None:
    run = ordered_run(tmp_path / "run", ["a"])
    with pytest.raises(ValueError, match="unknown executor 'lokal'"):
        launch([run], LaunchConfig(executor="lokal"), tmp_path / "logs")
    with pytest.raises(ValueError, match="same name"):
        launch([run, ordered_run(tmp_path / "other" / "run", ["a"])], LOCAL, tmp_path / "logs")
    with pytest.raises(ValueError, match="more than once"):
        ordered_run(tmp_path / "twice", ["a", "a"])


def test_local_runs_do_not_touch_the_distributed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    launch([ordered_run(tmp_path / "run", ["a"])], LOCAL, tmp_path / "logs")
    assert "RANK" not in os.environ


def test_takeover_launches_stages_whose_slurm_records_look_in_flight(tmp_path: Path, monkeypatch) -> None:
    run = ordered_run(tmp_path / "run", ["a"])
    record = _local_record(run, "a", pid=0)
    record.executor, record.job_id, record.folder = "slurm", "4242", str(tmp_path)
    write_launch_record(run.run_dir, record)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct: the job's state is unknown, so it counts as queued
    assert [stage.outcome for stage in launch([run], LOCAL, tmp_path / "logs").stages] == [IN_FLIGHT]
    report = launch([run], LOCAL, tmp_path / "logs", takeover=True)
    assert [stage.outcome for stage in report.stages] == [COMPLETED]
