"""A tiny pre-training run in its own process, for the kill-and-resume tests.

    python tests/mixmim/engine/run_tiny_pretrain.py RUN_DIR [--step-delay S] [--kill-in-checkpoint N]

The stand-in method on 160 built-in digits at 16 px: 3 epochs of 10 micro-batches of 16 with gradient
accumulation 2 (5 optimizer steps per epoch), ``last`` every 2 steps and every epoch, one metrics record per
step. Running it again on the same RUN_DIR resumes (or skips, once done).

``--method mixmim`` (or ``mae``, ``simmim``) trains the real method on ``mixmim_tiny_32`` (plain ViT:
``mixmim_vit_tiny_patch4_32``) at 32 px instead of the stand-in; the schedule is the same.
``--nan-at-call K`` returns a NaN loss at the K-th forward call (``nonfinite=rollback``).
``--kill-in-checkpoint N`` makes the N-th checkpoint write die by SIGKILL half-way through writing its
temporary file (a real kill during a checkpoint write). ``--step-delay`` sleeps in every forward so that a
parent process can kill the run in the middle of a step.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin_method import TinyMaskedAutoencoder  # noqa: E402

from baselines import build_method  # noqa: E402
from mixmim.config import RunConfig, apply_overrides  # noqa: E402
from mixmim.data import build_dataset, pretrain_transform  # noqa: E402
from mixmim.pretrain.task import PretrainTask, pretrain  # noqa: E402

IMG = 16
OVERRIDES = {
    "seed": 3,
    "data.digits_size": IMG,
    "data.max_train_images": 160,
    "pretrain.epochs": 3,
    "pretrain.warmup_epochs": 1,
    "pretrain.batch_size": 16,
    "pretrain.accum_iter": 2,
    "pretrain.blr": 0.05,
    "pretrain.checkpoint_every": 1,
    "pretrain.checkpoint_every_steps": 2,
}


def kill_in_checkpoint_write(n: int) -> None:
    """Make the ``n``-th ``torch.save`` write half of its bytes, then SIGKILL this process."""
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, io.BufferedWriter):  # not a checkpoint file (e.g. torch.distributed's buffers)
            return real_save(obj, f, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] < n:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save


def slow_down(seconds: float) -> None:
    """Sleep ``seconds`` in every micro-batch's loss (the real method itself is unchanged)."""
    real = PretrainTask.loss

    def loss(self, model, inputs, targets):
        time.sleep(seconds)
        return real(self, model, inputs, targets)

    if seconds:
        PretrainTask.loss = loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--kill-in-checkpoint", type=int, default=0)
    parser.add_argument("--method", default="", help="a real method (mixmim, mae, simmim) instead of the stand-in")
    parser.add_argument("--nan-at-call", type=int, default=0, help="forward call with a NaN loss (rollback)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    if args.kill_in_checkpoint:
        kill_in_checkpoint_write(args.kill_in_checkpoint)
    overrides = {**OVERRIDES, "pretrain.nonfinite": "rollback"} if args.nan_at_call else OVERRIDES
    if args.method:
        backbone = "mixmim_tiny_32" if args.method == "mixmim" else "mixmim_vit_tiny_patch4_32"
        real = {"method.name": args.method, "model.backbone": backbone, "data.digits_size": 32}
        cfg = apply_overrides(RunConfig(), {**overrides, **real})
        method = build_method(cfg)
        slow_down(args.step_delay)
    else:
        cfg = apply_overrides(RunConfig(), overrides)
        torch.manual_seed(0)  # the initial weights
        method = TinyMaskedAutoencoder(img_size=IMG, step_delay=args.step_delay)
        method.nan_at_calls = {args.nan_at_call}
    size = method.encoder.img_size if args.method else IMG
    dataset = build_dataset(cfg.data, "train", pretrain_transform(size, cfg.data.crop_min_scale))
    pretrain(method, dataset, cfg, args.run_dir, log_every=1)


if __name__ == "__main__":
    main()
