"""Seeding and capturing/restoring every random-number generator a run uses.

A run draws from Python's ``random`` (timm's RandAugment), NumPy's global generator (timm's Mixup), torch's
CPU generator (torchvision transforms, dropout, init), the CUDA generators, and the method's own
``generator`` (masks). :func:`capture_rng_state` returns all of them in a form that ``torch.load(...,
weights_only=True)`` accepts (tensors, ints, tuples, dicts; no NumPy arrays).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _numpy_state() -> dict[str, Any]:
    state = np.random.get_state(legacy=False)
    inner = state["state"]
    key = torch.from_numpy(inner["key"].astype(np.int64))  # uint32 [624] -> int64 tensor (weights_only)
    return {**state, "state": {"key": key, "pos": int(inner["pos"])}, "gauss": float(state["gauss"])}


def _set_numpy_state(state: dict[str, Any]) -> None:
    key = state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**state, "state": {"key": key, "pos": state["state"]["pos"]}})


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """All generator states of this process (and ``generator``'s, if given)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "generator": generator.get_state() if generator is not None else None,
    }


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`capture_rng_state` returned (CUDA states only where devices match)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
