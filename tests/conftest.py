"""Shared test settings: deterministic CPU runs with few threads (CI has 2 cores)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see experiments/cli.py
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module, restored after it: tiny models run faster so (and steadier on a shared
    machine), and a resumed run must use the thread count of the run it is compared to.

    Opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def jpeg_root(tmp_path_factory):
    """An ImageFolder root of 24 + 8 small JPEGs (``train|val/c0|c1``; 20-59 px of varied aspect, quality 95) of
    structured content (gradients and a checkerboard: a wrong crop box or flip changes the pixels a lot)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for i in range(32):
        w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx * 255 // w, yy * 255 // h, ((xx // 6 + yy // 6) % 2) * 255], -1).astype(np.uint8)
        folder = root / ("train" if i < 24 else "val") / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"{i}.jpg", quality=95)
    return root
