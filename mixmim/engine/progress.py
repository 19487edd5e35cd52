"""Progress of a training stage that a person can follow, on a terminal and in a log file.

On a terminal (stderr is a TTY): one tqdm bar for the whole launch, reused by every stage of every run,
that reads ``run 3/5 mixmim-mixmim_tiny_32-s0 · pretrain · epoch 6/12  61%|███   | ... [00:20<00:13,
loss=0.71]`` (percent, elapsed and ETA of the stage). Everywhere (and alone when the output is a file or a
pipe): one log line per epoch, ``run 3/5 mixmim-mixmim_tiny_32-s0 · pretrain · epoch 6/12 · 50% · loss
0.7100 · 0:00:12 elapsed · ETA 0:00:12``, instead of thousands of bar redraws.

The launcher says where a run stands in its launch through the environment (:data:`LAUNCH_POSITION_ENV`,
``"3/5"``), so stages in any process (local or a Slurm job) can show it without importing the launcher.
Used by the pre-training engine, the evaluation loop and the detection engine.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time

from tqdm import tqdm

from mixmim.runs.rundir import LAUNCH_POSITION_ENV

logger = logging.getLogger(__name__)
_bar: tqdm | None = None  # the launch's one bar, reused by every stage


def interactive() -> bool:
    """Whether progress goes to a terminal (bars) or to a file or pipe (one line per epoch)."""
    return sys.stderr.isatty()


def _shared_bar(total: int, initial: int, desc: str) -> tqdm:
    global _bar
    if _bar is None:
        _bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)
        atexit.register(close_bar)
    else:
        _bar.reset(total=total)
        _bar.update(initial)
        _bar.set_description(desc, refresh=False)
    return _bar


def close_bar() -> None:
    """Close the launch's bar (at exit; tests call it to start from a clean slate)."""
    global _bar
    if _bar is not None:
        _bar.close()
        _bar = None


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StageProgress:
    """Steps and epochs of one stage of one run.

    Args:
        run: the run's name; stage: the stage's name.
        epochs: epochs of the stage; steps_per_epoch: iterations per epoch (what :meth:`step` counts).
        enabled: False on ranks other than 0 (nothing is shown or logged).
    """

    def __init__(self, run: str, stage: str, epochs: int, steps_per_epoch: int, enabled: bool = True) -> None:
        self.run, self.stage, self.epochs, self.steps_per_epoch = run, stage, epochs, max(1, steps_per_epoch)
        self.enabled = enabled
        self.total = max(1, epochs * self.steps_per_epoch)
        self.done = 0
        self.started_at, self.started_from = time.monotonic(), 0
        self.epoch = 0
        self.bar: tqdm | None = None

    def label(self, epoch: int) -> str:
        """``run 3/5 <run> · <stage> · epoch <epoch+1>/<epochs>`` (1-based epoch)."""
        position = os.environ.get(LAUNCH_POSITION_ENV, "")
        run = f"run {position} {self.run}" if position else f"run {self.run}"
        return f"{run} · {self.stage} · epoch {min(epoch + 1, self.epochs)}/{self.epochs}"

    def start_epoch(self, epoch: int, step_in_epoch: int = 0) -> None:
        """Epoch ``epoch`` (0-based) begins (or resumes at ``step_in_epoch``)."""
        self.epoch = epoch
        self.done = min(self.total, epoch * self.steps_per_epoch + step_in_epoch)
        if self.bar is None:
            self.started_at, self.started_from = time.monotonic(), self.done
        if self.enabled and interactive():
            if self.bar is None:
                self.bar = _shared_bar(self.total, self.done, self.label(epoch))
            else:
                self.bar.set_description(self.label(epoch), refresh=True)

    def step(self, loss: float | None = None) -> None:
        """One iteration done; ``loss`` (when given) shows next to the bar (the trainer passes none: it shows the
        loss of each logging window with :meth:`show_loss`, so that no step waits for a value)."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.show_loss(loss)

    def show_loss(self, loss: float) -> None:
        """Show ``loss`` next to the bar (from the next redraw)."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def eta_s(self) -> float | None:
        """Seconds left for the stage at the pace of this process, or None before the first step."""
        done_here = self.done - self.started_from
        if done_here <= 0:
            return None
        return (time.monotonic() - self.started_at) / done_here * (self.total - self.done)

    def end_epoch(self, loss: float | None = None) -> str:
        """Log one line for the epoch just finished; return it."""
        parts = [self.label(self.epoch), f"{100 * self.done / self.total:.0f}%"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        parts.append(f"{format_duration(time.monotonic() - self.started_at)} elapsed")
        eta = self.eta_s()
        parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA ?")
        line = " · ".join(parts)
        if self.enabled:
            logger.info("%s", line)
        return line
