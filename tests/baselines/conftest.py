"""Fixtures of the baselines tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from baseline_helpers import BACKBONES, fit_codebook


@pytest.fixture(scope="session")
def codebooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small k-means codebook per test backbone (BEiT's targets), fitted once per session."""
    root = tmp_path_factory.mktemp("codebooks")
    return {name: fit_codebook(name, root / f"{name}.pt") for name in BACKBONES}


@pytest.fixture(autouse=True)
def single_thread():
    """Run each test on one intra-op thread: the tiny models gain nothing from more, on a shared 2-core machine
    two threads spin against each other (10x slower), and the golden losses stay independent of core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
