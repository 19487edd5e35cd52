"""Host-to-device copies that never stall the host: the one way masks and index plans reach the GPU.

Masks are drawn on the host on purpose: each method's ``generator`` is a CPU ``torch.Generator``, so a run
draws the same masks on any device (the CPU golden losses pin them), its state is a few bytes in every
checkpoint (exact resume), and BEiT's blockwise masking and the ``grouped`` attention's segment plan
(``mixmim.backbones.groups.plan_segments``, NumPy) are sequential host work that would need a device-to-host
round trip per stage if the masks lived on the GPU. What the device needs is then copied *from pinned memory
with* ``non_blocking=True``: a plain ``tensor.to("cuda")`` from pageable memory waits for every kernel queued
before it (a host synchronisation per copy, several per step), a pinned asynchronous copy is queued behind
them and the host goes on. PyTorch's pinned-memory allocator records the copy on its stream, so the staging
buffer is not reused before the copy has run.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["to_device"]


def to_device(data: Any, device: torch.device | str) -> Any:
    """``data`` (a tensor, or lists/tuples/dicts of them, e.g. a detector's images and targets) on ``device``:
    host -> CUDA through pinned memory without blocking the host; otherwise ``tensor.to(device)`` (the same
    tensor when it is already there: no copy on the CPU). Anything else is returned as it is."""
    device = torch.device(device)
    if isinstance(data, torch.Tensor):
        if data.device.type == "cpu" and device.type == "cuda":
            return data.contiguous().pin_memory().to(device, non_blocking=True)
        return data.to(device)
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(item, device) for item in data)
    if isinstance(data, dict):
        return {key: to_device(value, device) for key, value in data.items()}
    return data
