"""A tiny built-in COCO stage in its own process, for the kill-and-resume tests.

    python tests/mixmim/transfer/run_tiny_coco.py RUN_DIR [--step-delay S] [--kill-in-checkpoint N]

The real stage (``run_coco``, the debug recipe: torchvision Mask R-CNN with compact heads on ``mixmim_tiny_32``
from random weights, the generated 48 + 16 images at 64 px) at 8 images per step: 6 steps per epoch, stopped
by ``max_steps`` at step 8; ``checkpoint-last.pth`` at the start, after epoch 1 (step 6) and at the end, one
metrics record per step. Running it again on the same RUN_DIR resumes (or skips, once done).

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

from run_tiny_pretrain import kill_in_checkpoint_write  # noqa: E402

import mixmim.transfer.detection_task as detection  # noqa: E402
from mixmim.config import RunConfig, apply_overrides  # noqa: E402
from mixmim.transfer import coco_debug_overrides, run_coco  # noqa: E402

STEPS = 8
OVERRIDES = {"seed": 3, "model.backbone": "mixmim_tiny_32", "init": "random", "coco.batch_size": 8,
             "coco.max_steps": STEPS}  # fmt: skip


def tiny_coco_config(**overrides: object) -> RunConfig:
    """The debug COCO recipe at batch 8 for :data:`STEPS` steps, with ``overrides`` (dotted keys)."""
    return apply_overrides(RunConfig(experiment="tiny", name="run0"),
                           {**coco_debug_overrides(), **OVERRIDES, **overrides})  # fmt: skip


def slow_down(seconds: float) -> None:
    """Sleep ``seconds`` in every step's loss (the stage itself is unchanged)."""
    real = detection.DetectionTask.loss

    def loss(self, model, inputs, targets):
        time.sleep(seconds)
        return real(self, model, inputs, targets)

    detection.DetectionTask.loss = loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--kill-in-checkpoint", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    detection.LOG_EVERY = 1  # one metrics record per step (read by the parent to time its kill)
    if args.kill_in_checkpoint:
        kill_in_checkpoint_write(args.kill_in_checkpoint)
    if args.step_delay:
        slow_down(args.step_delay)
    run_coco(tiny_coco_config(), args.run_dir)


if __name__ == "__main__":
    main()
