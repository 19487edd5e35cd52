"""Fixtures for the evaluation tests: one CPU thread, a saved encoder, an official-format checkpoint.

One torch thread: the 2 CI cores are shared, and two threads on a busy machine run these small models
several times slower than one (and a resumed run must use the thread count of the run it is compared to).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from eval_helpers import BACKBONE, encoder_state, official_pretrain_checkpoint

from mixmim.engine.checkpoint import atomic_torch_save


@pytest.fixture(autouse=True, scope="module")
def _one_thread_in_every_module(one_thread) -> None:
    """Every evaluation test on one torch thread (``tests/conftest.py``'s ``one_thread``)."""


@pytest.fixture
def saved_encoder(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """``(run_dir, state)``: ``<run_dir>/pretrain/encoder.pth`` as the engine writes it."""
    run_dir = tmp_path / "run"
    state = encoder_state(seed=123)
    meta = {"backbone": BACKBONE, "step": 7}
    atomic_torch_save({"model": state, "meta": meta}, run_dir / "pretrain" / "encoder.pth")
    return run_dir, state


@pytest.fixture
def official_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """``(path, encoder state)`` of an official-format pre-training checkpoint outside any run directory."""
    state = encoder_state(seed=321)
    folder = tmp_path / "official"
    folder.mkdir()
    return official_pretrain_checkpoint(folder / "checkpoint-599.pth", state), state
