"""Numeric precision: ``auto`` resolves to bf16 autocast on GPUs that support it (else fp16) and fp32 on CPU.

fp16 uses a ``GradScaler``; bf16 and fp32 do not need one (the scaler is then disabled but still saved in
checkpoints, so a checkpoint has the same keys whatever the precision).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mixmim.config import CHOICES

PRECISIONS = CHOICES["pretrain.precision"]  # declared once, on the config
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` | ``bf16`` | ``fp16`` for ``device`` (``auto``: bf16 on capable GPUs, fp16 on others, fp32 on CPU).

    Raises:
        ValueError: an unknown value, or fp16 without a GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision=fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` for bf16/fp16, a no-op for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A ``GradScaler``, enabled only for fp16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
