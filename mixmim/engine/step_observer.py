"""Watching the :class:`~mixmim.engine.trainer.Trainer` of a stage from outside it (``mixmim-bench preflight``).

A stage builds its task and its trainer itself; the preflight runs the stage function unchanged inside
:func:`observe_steps` and reads what the trainer did: the task it trained (model, trainable part, dataset with its
transform, recipe) and the wall time of every ``Trainer.train_batch`` (forward, backward and, at the end of an
accumulation group, the optimizer step; the device is synchronised after each, so CUDA times are the step's).
Without an observer the trainer does nothing more than one ``ContextVar`` read when it is built.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import torch

__all__ = ["StepObserver", "current_observer", "observe_steps"]


class StepObserver:
    """What the trainers built inside :func:`observe_steps` did: :attr:`tasks` (one per trainer, in order) and
    :attr:`step_times` (seconds per ``train_batch``, in order)."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.step_times: list[float] = []

    def started(self, task: Any) -> None:
        """A trainer starts training ``task`` (after its fresh start or resume)."""
        self.tasks.append(task)

    @contextlib.contextmanager
    def step(self, device: torch.device) -> Iterator[None]:
        """Time one ``train_batch`` on ``device`` (synchronised before and after on CUDA)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.step_times.append(time.perf_counter() - start)


_OBSERVER: ContextVar[StepObserver | None] = ContextVar("mixmim_step_observer", default=None)


def current_observer() -> StepObserver | None:
    """The observer of the enclosing :func:`observe_steps`, or None."""
    return _OBSERVER.get()


@contextlib.contextmanager
def observe_steps() -> Iterator[StepObserver]:
    """Every trainer built inside reports to the yielded :class:`StepObserver`."""
    observer = StepObserver()
    token = _OBSERVER.set(observer)
    try:
        yield observer
    finally:
        _OBSERVER.reset(token)
