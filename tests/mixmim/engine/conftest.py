"""Fixtures for the engine tests (one torch thread: ``tests/conftest.py``), one finished tiny run per module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from standin_method import TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config, tiny_dataset

from mixmim.pretrain.task import pretrain


@pytest.fixture(scope="module")
def finished_run(one_thread, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """``(run_dir, result)`` of one complete tiny pre-training (shared by a module's tests)."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = tiny_config()
    torch.manual_seed(0)
    result = pretrain(TinyMaskedAutoencoder(img_size=IMG), tiny_dataset(cfg), cfg, run_dir, log_every=2)
    return run_dir, result
