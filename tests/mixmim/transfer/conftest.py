"""Fixtures of the COCO transfer tests: a run directory with a pre-trained encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.engine.checkpoint import atomic_torch_save


@pytest.fixture
def pretrained_run(tmp_path: Path) -> Path:
    """A run directory whose ``pretrain/encoder.pth`` holds a (random) ``mixmim_tiny_32`` encoder, in the
    format the pre-training engine writes (``{"model": state_dict, "meta": {...}}``)."""
    torch.manual_seed(0)
    encoder = create_backbone("mixmim_tiny_32", num_classes=0)
    atomic_torch_save({"model": encoder.state_dict(), "meta": {"steps": 0}}, tmp_path / "pretrain" / "encoder.pth")
    return tmp_path


@pytest.fixture(autouse=True)
def one_thread():
    """Detection steps are many small ops: one thread is as fast on 2 cores and far faster on a busy machine
    (no thread oversubscription). Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
