"""A tiny fine-tuning or linear-probe stage in its own process, for the kill-and-resume tests.

    python tests/mixmim/evaluate/run_tiny_classifier.py {finetune,linprobe} RUN_DIR [--step-delay S]
        [--kill-in-checkpoint N]

The real stage (``run_finetune`` / ``run_linprobe``: ``mixmim_tiny_32`` from random weights, Mixup/CutMix,
RandAugment, erasing and drop path for fine-tuning) on 64 built-in digits: 2 epochs of 4 steps, ``last`` at
the start and after every epoch (fine-tuning keeps ``checkpoint-<epoch>.pth`` too, written before ``last``),
one metrics record per step. Running it again on the same RUN_DIR resumes (or skips, once done).

``--kill-in-checkpoint N`` makes the N-th checkpoint write die by SIGKILL half-way through its temporary file.
``--step-delay`` sleeps in every forward so that a parent process can kill the run in the middle of a step.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "engine")]

from eval_helpers import tiny_config  # noqa: E402
from run_tiny_pretrain import kill_in_checkpoint_write  # noqa: E402

from mixmim.evaluate import run_finetune, run_linprobe  # noqa: E402
from mixmim.evaluate.train_loop import ClassifierTask  # noqa: E402

STAGES = {"finetune": run_finetune, "linprobe": run_linprobe}


def slow_down(seconds: float) -> None:
    """Sleep ``seconds`` in every micro-batch's loss (the stage itself is unchanged)."""
    real = ClassifierTask.loss

    def loss(self, model, inputs, targets):
        time.sleep(seconds)
        return real(self, model, inputs, targets)

    ClassifierTask.loss = loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--kill-in-checkpoint", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    if args.kill_in_checkpoint:
        kill_in_checkpoint_write(args.kill_in_checkpoint)
    if args.step_delay:
        slow_down(args.step_delay)
    STAGES[args.stage](tiny_config(init="random"), args.run_dir, log_every=1)


if __name__ == "__main__":
    main()
