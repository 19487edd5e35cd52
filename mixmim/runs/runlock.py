"""Locks on run folders: one process works on a run at a time, and a dead process never strands one.

A run is held through an OS file lock (``flock``) on ``<run_dir>/.run.lock``. The kernel releases it when
the holding process ends, however it ends (SIGKILL, out of memory, a node reboot), so a lock is never
stale: "is anyone working on this run" is "is the lock held", never "is the PID in ``launch.json`` alive
on that host". The lock file also holds a note of who holds it (host, PID, time, command) for messages;
the note is information only, the lock is the truth.

Shared filesystems: ``flock`` works across nodes on NFS v4 (Linux clients map it onto NFS byte-range
locks) and on Lustre/GPFS/BeeGFS mounted with lock support (Lustre: ``-o flock``). Where ``flock`` is
refused (``ENOLCK``, ``EOPNOTSUPP``: e.g. NFS v3 mounted ``nolock``), the lock falls back to POSIX
``lockf`` locks; where both are refused, :class:`RunLockError` says so (``docs/architecture.md``, "Run
directory"). Torch-free: ``slurm`` uses it through :mod:`mixmim.runs.rundir`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_FILE = ".run.lock"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}

# Runs this process holds: lock path -> [descriptor, depth]. A stage called by the launcher that holds its
# run takes the lock again (re-entrant) instead of blocking on its own process.
_held: dict[Path, list[int]] = {}
_held_guard = threading.Lock()


class RunLockError(RuntimeError):
    """A run's lock cannot be taken: held by another live process (``holder``) or unsupported here."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


def _lock_fd(fd: int, blocking: bool) -> bool:
    """Take an exclusive lock on ``fd``: ``flock``, else POSIX ``lockf``; False when another holder has it."""
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    for lock in (fcntl.flock, fcntl.lockf):
        try:
            lock(fd, flags)
            return True
        except OSError as error:
            if error.errno in _BUSY:
                return False
            if error.errno not in _UNSUPPORTED:
                raise
    raise RunLockError(
        "this filesystem refuses file locks (flock and lockf): mount it with lock support (NFS v4, or NFS v3 "
        "without 'nolock'; Lustre with '-o flock') or put --output on a filesystem that has them"
    )


def describe(holder: dict[str, Any]) -> str:
    """``PID 123 on host h since <time>`` from a lock note (or ``another process`` when it has none)."""
    if not holder.get("pid"):
        return "another process"
    job = f" (Slurm job {holder['job']})" if holder.get("job") else ""
    return f"PID {holder['pid']} on host {holder.get('host', '?')}{job} since {holder.get('since', '?')}"


class RunLock:
    """The exclusive lock of one run folder (re-entrant within a process).

    Usage::

        with RunLock(run_dir):          # raises RunLockError when another live process holds the run
            ...
        lock = RunLock(run_dir)
        if lock.acquire(): ...          # False when held elsewhere; lock.holder() says by whom
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir).absolute() / LOCK_FILE
        self.held = False

    def acquire(self, blocking: bool = False, timeout_s: float | None = None, poll_s: float = 1.0,
                job: str = "") -> bool:  # fmt: skip
        """Take the lock; return False when another process holds it (after ``timeout_s`` when blocking).

        ``job`` goes into the note (e.g. a Slurm job attempt), so that the other tasks of that job can see
        that their rank 0 holds the run (``slurm.stage_job``)."""
        if self.held:
            raise RuntimeError(f"{self.path} is already held through this RunLock")
        with _held_guard:
            if self.path in _held:
                _held[self.path][1] += 1
                self.held = True
                return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not _lock_fd(fd, blocking=blocking and deadline is None):
                if not blocking or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    return False
                time.sleep(poll_s)
        except BaseException:
            os.close(fd)
            raise
        note = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:500],
        }
        if job:
            note["job"] = job
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(note) + "\n").encode("utf-8"), 0)
        with _held_guard:
            _held[self.path] = [fd, 1]
        self.held = True
        return True

    def release(self) -> None:
        """Give the lock back (the outermost release in this process unlocks the file)."""
        if not self.held:
            return
        self.held = False
        with _held_guard:
            entry = _held[self.path]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[self.path]
        os.ftruncate(entry[0], 0)
        os.close(entry[0])  # closing the descriptor drops the lock

    def holder(self) -> dict[str, Any]:
        """The note of whoever holds (or last held) the lock: host, pid, since, command (and ``job`` when the
        holder gave one); {} if none."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
            return json.loads(text) if text else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def __enter__(self) -> RunLock:
        if not self.acquire():
            holder = self.holder()
            raise RunLockError(f"{self.path.parent} is being worked on by {describe(holder)}; wait for it to "
                               "finish (or stop that process) and run again", holder)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Who holds ``run_dir``'s lock, or None when nobody else does (free, or held by this process).

    The probe takes the lock for an instant when it is free; it creates no folder and no lock file.
    """
    path = Path(run_dir).absolute() / LOCK_FILE
    with _held_guard:
        if path in _held:
            return None
    if not path.is_file():
        return None
    lock = RunLock(run_dir)
    if lock.acquire():
        lock.release()
        return None
    return lock.holder() or {"pid": 0}


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock tied to ``path`` (on ``.<name>.lock`` beside it) while the block runs.

    For short read-modify-write sections, e.g. :func:`mixmim.runs.rundir.update_manifest`; waits for the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _lock_fd(fd, blocking=True)
        yield
    finally:
        os.close(fd)
