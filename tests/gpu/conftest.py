"""Fixtures of the GPU-path tests: the devices and precisions each check runs on, small methods and codebooks.

Every check runs on the CPU too where the path exists there (fp32 and bf16 autocast), so CI exercises the same
code; the CUDA cases carry the ``gpu`` marker and are skipped, with the reason, when no CUDA device is visible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpu_helpers import BACKBONES, fit_codebook


@pytest.fixture(scope="session")
def codebooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small k-means codebook per test backbone (BEiT's targets), fitted once per session."""
    root = tmp_path_factory.mktemp("gpu-codebooks")
    return {name: fit_codebook(name, root / f"{name}.pt") for name in BACKBONES}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread on the CPU (tiny models; the CI machine is shared); restored after the test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
