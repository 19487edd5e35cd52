"""The resume guarantee of the one training loop, for every stage it trains: a run killed by SIGKILL (mid-step,
or mid-checkpoint-write) resumes from its last complete checkpoint and ends with bitwise the same weights,
optimizer state and results as an uninterrupted run.

Each run is a real process:
- pre-training (``run_tiny_pretrain.py``): 3 epochs x 5 optimizer steps of 2 accumulated micro-batches,
  ``checkpoint-last.pth`` every 2 steps and every epoch;
- fine-tuning and the linear probe (``tests/mixmim/evaluate/run_tiny_classifier.py``): the real stages on
  ``mixmim_tiny_32``, 2 epochs x 4 steps, a checkpoint at the start and after every epoch;
- the built-in COCO engine (``tests/mixmim/transfer/run_tiny_coco.py``): the real stage (Mask R-CNN on
  ``mixmim_tiny_32``, the generated images), 8 steps of 8 images, a checkpoint at the start, after step 6
  (epoch 1) and at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mixmim
from mixmim.engine.checkpoint import load_checkpoint
from mixmim.runs.rundir import read_jsonl, read_result

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = Path(__file__).with_name("run_tiny_pretrain.py")
CLASSIFIER_SCRIPT = Path(__file__).parents[1] / "evaluate" / "run_tiny_classifier.py"
COCO_SCRIPT = Path(__file__).parents[1] / "transfer" / "run_tiny_coco.py"
REPO = Path(mixmim.__file__).resolve().parent.parent
TOTAL_STEPS = 15


def start(run_dir: Path, *args: str, stage: str | None = None) -> subprocess.Popen:
    """Run the tiny pre-training (``stage=None``) or the tiny ``finetune`` / ``linprobe`` / ``coco`` stage in
    ``run_dir``."""
    command = {None: [str(SCRIPT)], "coco": [str(COCO_SCRIPT)]}.get(stage, [str(CLASSIFIER_SCRIPT), stage])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        env.pop(name, None)  # a single process, even inside a Slurm job
    return subprocess.Popen([sys.executable, *command, str(run_dir), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finish(process: subprocess.Popen, expect: int = 0) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == expect, output[-3000:]
    return output


def logged_steps(run_dir: Path, stage: str = "pretrain") -> list[int]:
    return [r["step"] for r in read_jsonl(run_dir / stage / "metrics.jsonl") if "loss" in r]


def kill_after_step(process: subprocess.Popen, run_dir: Path, step: int, stage: str = "pretrain") -> None:
    """SIGKILL ``process`` as soon as it has logged ``step`` (it is then inside a later step)."""
    deadline = time.monotonic() + 240
    while not (logged_steps(run_dir, stage) and logged_steps(run_dir, stage)[-1] >= step):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def assert_bitwise_equal(a: dict, b: dict) -> None:
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    assert a["position"] == b["position"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["standin", "mixmim"])
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, method):
    """Pre-training of the stand-in method, and of the real MixMIM on ``mixmim_tiny_32``."""
    straight, mid_step, mid_write = tmp_path / "straight", tmp_path / "mid_step", tmp_path / "mid_write"
    real = () if method == "standin" else ("--method", method)
    runs = [
        start(straight, *real),
        start(mid_step, "--step-delay", "0.1", *real),
        start(mid_write, "--kill-in-checkpoint", "5", *real),
    ]
    kill_after_step(runs[1], mid_step, 6)
    finish(runs[0])
    finish(runs[2], expect=-signal.SIGKILL)

    # The kills really happened part-way: mid_step within epoch 1, mid_write while writing a "last" file.
    assert runs[1].returncode == -signal.SIGKILL and logged_steps(mid_step)[-1] < TOTAL_STEPS
    partial = list((mid_write / "pretrain").glob(".checkpoint-last.pth.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    last = load_checkpoint(mid_write / "pretrain" / "checkpoint-last.pth")  # the previous one, complete
    assert last["position"] == {"epoch": 0, "step_in_epoch": 8, "global_step": 4}
    assert read_result(mid_step, "pretrain") is None and read_result(mid_write, "pretrain") is None

    resumed = [start(mid_step, *real), start(mid_write, *real)]
    outputs = [finish(p) for p in resumed]
    assert all("resumed from" in out for out in outputs)
    assert not list((mid_write / "pretrain").glob(".checkpoint-*.tmp"))

    reference = load_checkpoint(straight / "pretrain" / "checkpoint-last.pth")
    assert reference["position"]["global_step"] == TOTAL_STEPS
    for run_dir in (mid_step, mid_write):
        assert_bitwise_equal(reference, load_checkpoint(run_dir / "pretrain" / "checkpoint-last.pth"))
        assert (
            read_result(run_dir, "pretrain")["metrics"]["loss"] == read_result(straight, "pretrain")["metrics"]["loss"]
        )
        assert logged_steps(run_dir) == list(range(1, TOTAL_STEPS + 1))  # no step logged twice
        assert (run_dir / "pretrain" / "checkpoint-1.pth").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["finetune", "linprobe"])
def test_classifier_stage_sigkill_then_resume_is_bitwise_identical(tmp_path, stage):
    straight, mid_step, mid_write = tmp_path / "straight", tmp_path / "mid_step", tmp_path / "mid_write"
    # The writes: last at step 0, [fine-tuning: checkpoint-1.pth,] last at step 4 (killed half-way).
    last_after_epoch_1 = 3 if stage == "finetune" else 2
    runs = [
        start(straight, stage=stage),
        start(mid_step, "--step-delay", "0.3", stage=stage),
        start(mid_write, "--kill-in-checkpoint", str(last_after_epoch_1), stage=stage),
    ]
    kill_after_step(runs[1], mid_step, 5, stage)  # inside epoch 2: its steps are lost and must be replayed
    finish(runs[0])
    finish(runs[2], expect=-signal.SIGKILL)

    assert runs[1].returncode == -signal.SIGKILL and logged_steps(mid_step, stage)[-1] < 8
    assert load_checkpoint(mid_step / stage / "checkpoint-last.pth")["position"]["global_step"] == 4
    partial = list((mid_write / stage).glob(".checkpoint-last.pth.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    assert load_checkpoint(mid_write / stage / "checkpoint-last.pth")["position"]["global_step"] == 0  # complete
    assert read_result(mid_step, stage) is None and read_result(mid_write, stage) is None

    outputs = [finish(p) for p in [start(mid_step, stage=stage), start(mid_write, stage=stage)]]
    assert all("resumed from" in out for out in outputs)
    reference = load_checkpoint(straight / stage / "checkpoint-last.pth")
    assert reference["position"]["global_step"] == 8
    expected = read_result(straight, stage)["metrics"]
    for run_dir in (mid_step, mid_write):
        assert not list((run_dir / stage).glob(".checkpoint-*.tmp"))
        assert_bitwise_equal(reference, load_checkpoint(run_dir / stage / "checkpoint-last.pth"))
        assert read_result(run_dir, stage)["metrics"] == expected
        assert logged_steps(run_dir, stage) == list(range(1, 9))  # no step logged twice


@pytest.mark.slow
def test_coco_stage_sigkill_then_resume_is_bitwise_identical(tmp_path):
    """The built-in COCO engine: flips, RPN/RoI sampling and the data order are all random."""
    straight, mid_step, mid_write = tmp_path / "straight", tmp_path / "mid_step", tmp_path / "mid_write"
    runs = [  # the writes: last at step 0, last after epoch 1 (step 6: killed half-way), last at step 8
        start(straight, stage="coco"),
        start(mid_step, "--step-delay", "0.3", stage="coco"),
        start(mid_write, "--kill-in-checkpoint", "2", stage="coco"),
    ]
    kill_after_step(runs[1], mid_step, 7, "coco")  # inside step 8: steps 7-8 are lost and must be replayed
    finish(runs[0])
    finish(runs[2], expect=-signal.SIGKILL)

    assert runs[1].returncode == -signal.SIGKILL and logged_steps(mid_step, "coco")[-1] < 8
    assert load_checkpoint(mid_step / "coco" / "checkpoint-last.pth")["position"]["global_step"] == 6
    partial = list((mid_write / "coco").glob(".checkpoint-last.pth.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    assert load_checkpoint(mid_write / "coco" / "checkpoint-last.pth")["position"]["global_step"] == 0  # complete
    assert read_result(mid_step, "coco") is None and read_result(mid_write, "coco") is None

    outputs = [finish(p) for p in [start(mid_step, stage="coco"), start(mid_write, stage="coco")]]
    assert all("resumed from" in out for out in outputs)
    reference = load_checkpoint(straight / "coco" / "checkpoint-last.pth")
    assert reference["position"]["global_step"] == 8
    expected = read_result(straight, "coco")["metrics"]
    for run_dir in (mid_step, mid_write):
        assert not list((run_dir / "coco").glob(".checkpoint-*.tmp"))
        assert_bitwise_equal(reference, load_checkpoint(run_dir / "coco" / "checkpoint-last.pth"))
        assert read_result(run_dir, "coco")["metrics"] == expected
        assert logged_steps(run_dir, "coco") == list(range(1, 9))  # no step logged twice
