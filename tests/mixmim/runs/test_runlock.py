"""Run locks: exclusive between processes, re-entrant within one, released by the kernel when a holder dies."""

import errno
import fcntl

import pytest

from mixmim.runs import runlock
from mixmim.runs.rundir import RunLock, RunLockError, lock_holder
from slurm.testing import hold_run_lock


def test_a_lock_is_exclusive_between_processes_and_dies_with_its_holder(tmp_path):
    holder = hold_run_lock(tmp_path / "run")
    try:
        lock = RunLock(tmp_path / "run")
        assert not lock.acquire()
        assert lock_holder(tmp_path / "run")["pid"] == holder.pid
        with pytest.raises(RunLockError, match=f"PID {holder.pid} on host"), RunLock(tmp_path / "run"):
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel releases the lock
        holder.wait()
    assert lock_holder(tmp_path / "run") is None
    with RunLock(tmp_path / "run") as lock:
        assert lock.holder()["pid"] == __import__("os").getpid()


def test_a_lock_is_reentrant_within_a_process(tmp_path):
    outer = RunLock(tmp_path)
    assert outer.acquire()
    inner = RunLock(tmp_path)
    assert inner.acquire()  # e.g. a stage called by the launcher that holds its run
    assert lock_holder(tmp_path) is None  # held by this very process: nobody else
    inner.release()
    assert (tmp_path / runlock.LOCK_FILE).read_text()  # still held: the note stays
    outer.release()
    assert (tmp_path / runlock.LOCK_FILE).read_text() == ""
    assert lock_holder(tmp_path / "never-locked") is None and not (tmp_path / "never-locked").exists()


def test_filesystems_without_flock_fall_back_to_lockf_then_say_what_is_needed(tmp_path, monkeypatch):
    calls = []

    def no_flock(fd, flags):
        calls.append("flock")
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with RunLock(tmp_path):
        assert calls == ["flock"]  # lockf took it
    monkeypatch.setattr(fcntl, "lockf", no_flock)
    with pytest.raises(RunLockError, match="mount it with lock support"):
        RunLock(tmp_path).acquire()
