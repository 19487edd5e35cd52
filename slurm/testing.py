"""Test support: small stage functions for the launcher's tests. Not used by any experiment.

They live in the package, not in the test modules, because a Slurm job unpickles its function by module
and name, and test modules are not importable from the job. Each stage follows the stage contract
(``fn(cfg, run_dir) -> metrics``; ``result.json`` written once, at the end; resume from a checkpoint).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixmim.runs import rundir
from slurm.distributed import DISTRIBUTED_ENV_VARS

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"
_MODULUS = 2**61 - 1  # a Mersenne prime: the counter's values stay exact integers in JSON


@dataclass
class CountingConfig:
    """``steps`` steps of ``sleep_s`` seconds each, a checkpoint after every step."""

    stage: str = "count"
    steps: int = 20
    sleep_s: float = 0.05
    seed: int = 1


@dataclass
class FailingConfig:
    """A stage that raises ``RuntimeError(message)``."""

    stage: str = "fail"
    message: str = "failing on purpose"


@dataclass
class EnvironmentConfig:
    """A stage whose result is the ``torch.distributed`` environment it ran with."""

    stage: str = "env"


def next_value(value: int, step: int) -> int:
    """One step of the counter: a hash chain, so that a skipped or repeated step changes the result."""
    return (value * 6364136223846793005 + 1442695040888963407 + step) % _MODULUS


def count_steps(cfg: CountingConfig, run_dir: Path) -> dict[str, Any]:
    """Advance the counter ``cfg.steps`` times, resuming from ``checkpoint.json`` when there is one.

    Every start is logged in ``metrics.jsonl`` (``{"event": "start", "step": ..., "job_id": ...}``), so a
    test can see that a requeued job resumed instead of starting over.
    """
    if rundir.is_done(run_dir, cfg.stage):
        return rundir.read_result(run_dir, cfg.stage)["metrics"]  # type: ignore[index]
    folder = rundir.stage_dir(run_dir, cfg.stage)
    checkpoint = folder / CHECKPOINT_FILE
    state = rundir.read_json(checkpoint) if checkpoint.is_file() else {"step": 0, "value": cfg.seed}
    rundir.append_jsonl(
        folder / rundir.METRICS_FILE,
        {"event": "start", "step": state["step"], "job_id": os.environ.get("SLURM_JOB_ID", ""), "pid": os.getpid()},
    )
    logger.info("counting from step %d to %d", state["step"], cfg.steps)
    while state["step"] < cfg.steps:
        time.sleep(cfg.sleep_s)
        state = {"step": state["step"] + 1, "value": next_value(state["value"], state["step"])}
        rundir.atomic_write_json(checkpoint, state)
    metrics = {"steps": state["step"], "value": state["value"]}
    rundir.write_result(run_dir, cfg.stage, {"status": "done", "metrics": metrics})
    return metrics


def fail_on_purpose(cfg: FailingConfig, run_dir: Path) -> dict[str, Any]:
    """Raise ``RuntimeError(cfg.message)``."""
    logger.info("about to fail in %s", run_dir)
    raise RuntimeError(cfg.message)


def record_environment(cfg: EnvironmentConfig, run_dir: Path) -> dict[str, Any]:
    """Write the ``torch.distributed`` variables (and the Slurm job id) this stage saw as its metrics."""
    metrics = {name: os.environ.get(name) for name in (*DISTRIBUTED_ENV_VARS, "SLURM_JOB_ID")}
    rundir.write_result(run_dir, cfg.stage, {"status": "done", "metrics": metrics})
    return metrics


@dataclass
class OrderConfig:
    """A stage that notes its name in ``<run_dir>/order.txt``."""

    stage: str = "mark"


def mark_order(cfg: OrderConfig, run_dir: Path) -> dict[str, Any]:
    """Append ``cfg.stage`` to ``<run_dir>/order.txt``, so a test can see in which order stages ran."""
    with open(Path(run_dir) / "order.txt", "a", encoding="utf-8") as f:
        f.write(cfg.stage + "\n")
    rundir.write_result(run_dir, cfg.stage, {"status": "done", "metrics": {}})
    return {}


START_HINT = 'start it with: eval "$(scripts/slurm-cluster start)"'


def cluster_unavailable_reason() -> str | None:
    """Why the local Slurm cluster cannot be used, or None when ``sinfo`` sees an idle/busy node."""
    missing = [command for command in ("sinfo", "srun", "sbatch", "sacct") if shutil.which(command) is None]
    if missing:
        return f"Slurm commands not found ({', '.join(missing)}); {START_HINT}"
    conf = os.environ.get("SLURM_CONF", "")
    if not conf or not Path(conf).is_file():
        return f"SLURM_CONF is unset or not a file ({conf!r}); {START_HINT}"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20, check=True)
    except (subprocess.SubprocessError, OSError) as error:
        return f"the Slurm controller of {conf} does not answer ({error}); {START_HINT}"
    if not {"idle", "mix", "alloc"} & set(states.stdout.split()):
        return f"no usable node in the cluster of {conf} (sinfo: {states.stdout.strip()!r})"
    return None


# Holds <run_dir>/.run.lock with a plain flock and writes a holder note, as any other process would; it imports
# nothing of the suite, so it starts at once.
_HOLD_LOCK = """
import fcntl, json, os, socket, sys, time
os.makedirs(sys.argv[1], exist_ok=True)
fd = os.open(os.path.join(sys.argv[1], ".run.lock"), os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": "now"}).encode())
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_run_lock(run_dir: Path, seconds: float = 120.0, prefix: Sequence[str] = ()) -> subprocess.Popen:
    """Start a process that holds ``run_dir``'s lock for ``seconds`` (kill it to release); return it once it
    holds the lock. ``prefix``: a command that runs it elsewhere (e.g. on another node: ``nsenter ...``)."""
    holder = subprocess.Popen([*prefix, sys.executable, "-c", _HOLD_LOCK, str(run_dir), str(seconds)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    line = holder.stdout.readline().strip() if holder.stdout is not None else ""
    if line != "locked":
        holder.kill()
        raise RuntimeError(f"the lock holder did not start (said {line!r})")
    return holder
