"""Fixtures of the GPU-path tests: the devices and precisions each check runs on, small methods and codebooks.

Every check runs on the CPU too where the path exists there (fp32 and bf16 autocast), so CI exercises the same
code; the CUDA cases carry the ``gpu`` marker and are skipped, with the reason, when no CUDA device is visible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpu_helpers import BACKBONES, fit_codebook

NO_CUDA = "needs a CUDA device (torch.cuda.is_available() is False); run scripts/gpu-check on a GPU machine"
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)


def device_cases(cpu: tuple[str, ...], cuda: tuple[str, ...]) -> list:
    """``(device, precision)`` parameters: the CPU ones plain, the CUDA ones marked ``gpu`` and skipped without
    CUDA."""
    cases = [pytest.param("cpu", p, id=f"cpu-{p}") for p in cpu]
    cases += [pytest.param("cuda", p, id=f"cuda-{p}", marks=(pytest.mark.gpu, requires_cuda)) for p in cuda]
    return cases


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
