"""``mixmim-bench run smoke`` killed by SIGKILL and run again ends with the results of an uninterrupted run.

Three real CLI processes (``--variant debug --only 'mae-*'``: pre-training, linear probe, k-NN, fine-tuning of
MAE on ``mixmim_tiny_32``, one torch thread each): one uninterrupted; one killed during pre-training, just
after its step-2 checkpoint (``pretrain.checkpoint_every_steps=2``, set on all three, so that the kill loses
steps that the next launch replays); one killed just after the first fine-tuning checkpoint. Each killed run
is then launched again with the same command. Every stage's ``result.json`` (timings and the run folder's path
aside) and every checkpoint (model, optimizer, position) must equal the uninterrupted run's, bitwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import mixmim
from mixmim.engine.checkpoint import LAST, load_checkpoint
from mixmim.runs.rundir import read_result

REPO = Path(mixmim.__file__).resolve().parent.parent
RUN = Path("smoke-debug") / "mae-mixmim_tiny_32-s0"
STAGES = ("pretrain", "linprobe", "knn", "finetune")
TRAINED = ("pretrain", "linprobe", "finetune")  # the stages with training checkpoints
TIMING_KEYS = ("wall_time_s", "images_per_s", "gpu_hours")


def launch(output: Path) -> subprocess.Popen:
    """``mixmim-bench run smoke --variant debug --only 'mae-*'`` into ``output``, one torch thread."""
    command = [sys.executable, "-m", "experiments.cli", "run", "smoke", "--variant", "debug", "--only", "mae-*",
               "--set", "pretrain.checkpoint_every_steps=2", "--output", str(output)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_JOB_ID"):
        env.pop(name, None)  # a single local process, even inside a Slurm job
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], what: str) -> None:
    """SIGKILL ``process`` as soon as ``condition()`` holds (polled every 10 ms)."""
    deadline = time.monotonic() + 300
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, f"the run ended before {what}"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def checkpoint_step(path: Path) -> int:
    """The optimizer steps that ``path`` holds, -1 while it does not exist (or is being replaced)."""
    try:
        return load_checkpoint(path)["position"]["global_step"]
    except (FileNotFoundError, ValueError):
        return -1


def comparable(result: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``result`` without timings (at any depth), with the run folder's path replaced by ``<run>``."""

    def strip(value: Any) -> Any:
        return {k: strip(v) for k, v in value.items() if k not in TIMING_KEYS} if isinstance(value, dict) else value

    return json.loads(json.dumps(strip(result)).replace(str(run_dir), "<run>"))


def assert_same_checkpoint(a: dict[str, Any], b: dict[str, Any], name: str) -> None:
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), (name, key)
    for index, state in a.get("optimizer", {}).get("state", {}).items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key]), (name, index, key)
    assert a.get("position") == b.get("position"), name


@pytest.mark.slow
def test_smoke_killed_in_pretraining_or_after_the_first_finetune_checkpoint_ends_as_uninterrupted(tmp_path):
    straight, in_pretrain, in_finetune = tmp_path / "straight", tmp_path / "in_pretrain", tmp_path / "in_finetune"
    runs = [launch(straight), launch(in_pretrain), launch(in_finetune)]
    kill_when(runs[1], lambda: checkpoint_step(in_pretrain / RUN / "pretrain" / LAST) == 2, "step 2 of pretrain")
    kill_when(runs[2], lambda: (in_finetune / RUN / "finetune" / LAST).is_file(), "the first finetune checkpoint")
    # Killed where intended: inside pre-training (work after step 2 lost), inside fine-tuning.
    assert read_result(in_pretrain / RUN, "pretrain") is None
    assert read_result(in_finetune / RUN, "linprobe") is not None and read_result(in_finetune / RUN, "finetune") is None

    for process in [launch(in_pretrain), launch(in_finetune), runs[0]]:
        finish(process)
    reference = straight / RUN
    for run_dir, killed in ((in_pretrain / RUN, "pretrain"), (in_finetune / RUN, "finetune")):
        log = (run_dir.parent / "_logs" / RUN.name / f"{killed}.log").read_text()
        assert f"{killed} resumed from" in log  # from its checkpoint, not from the start
        for stage in STAGES:
            expected = comparable(read_result(reference, stage), reference)
            assert comparable(read_result(run_dir, stage), run_dir) == expected, stage
        for stage in TRAINED:
            a, b = (load_checkpoint(d / stage / LAST) for d in (reference, run_dir))
            assert_same_checkpoint(a, b, stage)
        assert_same_checkpoint(*(load_checkpoint(d / "pretrain" / "encoder.pth") for d in (reference, run_dir)),
                               "encoder.pth")  # fmt: skip
