"""Golden losses: the first AdamW steps of every method on every backbone at a fixed seed.

A change to a method, a backbone, the masking or the initialisation shows up here. After an *intended*
change, regenerate the file and review its diff:
``MIXMIM_UPDATE_GOLDEN=1 pytest tests/baselines/test_baseline_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from baseline_helpers import BACKBONES, METHOD_NAMES, codebook_for, fixed_images, small_method, train_losses

GOLDEN_FILE = Path(__file__).with_name("golden_losses.json")
STEPS = 5
RTOL, ATOL = 1e-3, 1e-4  # loose enough for other CPUs' float rounding, tight enough for any real change


def golden_run(name: str, backbone: str, codebook: Path | None) -> list[float]:
    """Losses of the first :data:`STEPS` AdamW steps (lr 1e-3, betas (0.9, 0.95), wd 0.05), batch of 8."""
    method = small_method(name, backbone, codebook, seed=0)
    method.reseed(0)
    return train_losses(method, fixed_images(8, seed=0), steps=STEPS, lr=1e-3)


@pytest.mark.slow
def test_golden_losses(codebooks):
    runs = {f"{name}/{backbone}": golden_run(name, backbone, codebook_for(name, backbone, codebooks))
            for name in METHOD_NAMES for backbone in BACKBONES}
    if os.environ.get("MIXMIM_UPDATE_GOLDEN"):
        GOLDEN_FILE.write_text(json.dumps({"steps": STEPS, "torch": torch.__version__, "losses": runs},
                                          indent=2, sort_keys=True) + "\n")
        pytest.skip(f"rewrote {GOLDEN_FILE.name}")
    golden = json.loads(GOLDEN_FILE.read_text())["losses"]
    assert set(golden) == set(runs), "methods/backbones changed: regenerate the golden file"
    for key, losses in runs.items():
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(golden[key]), rtol=RTOL, atol=ATOL,
                                   msg=lambda m, key=key: f"{key}: {m}")
