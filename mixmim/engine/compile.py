"""``torch.compile`` of the module a training step runs (the ``compile`` field of each training stage).

The Trainer compiles the module its forward runs (:attr:`Trainer.model`: the task's module, or its DDP
wrapper): the method's forward and loss (pre-training), the classifier's forward (fine-tuning, the probe;
their criterion runs after it, outside the graph), and with them their backward (AOTAutograd). What the
optimizer and the checkpoints hold is the task's own module, never the compiled wrapper, so a checkpoint of
a compiled run has the same keys as an eager one (no ``_orig_mod.`` prefix) and either resumes the other.

The optimizer step is not compiled: the suite's AdamW is torch's fused kernel (``build_adamw``, one kernel
for every parameter on CUDA and CPU), which a compiled step would not beat, and the lr changes every step.

Modes (:data:`COMPILE_MODES`):

- ``off`` (default): eager.
- ``inductor``: torch's default backend (code generation: Triton on CUDA, C++/OpenMP on the CPU, which needs a
  C++ compiler).
- ``aot_eager``: the graphs and the AOTAutograd backward of ``inductor`` without code generation: checks the
  wiring (graph breaks, recompilations, equal losses) cheaply, e.g. in tests on a CPU.
- ``eager``: dynamo's graphs alone, run by the eager kernels (no AOTAutograd): the cheapest check of graph breaks
  and recompilations; random ops draw exactly what eager draws.

Shapes are ``dynamic=None`` (torch's default): a value that changes between steps (an int the graph closes
over) is made symbolic after its first change, so there is at most one recompilation instead of one per
step. The masks are tensors of fixed shape: changing masks do not recompile (``tests/gpu/test_compile.py``
counts the graphs over steps).
"""

from __future__ import annotations

import torch
from torch import nn

from mixmim.config import CHOICES

COMPILE_MODES = CHOICES["pretrain.compile"]  # declared once, on the config


def check_compile_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`COMPILE_MODES`, else a ValueError naming the choices."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {COMPILE_MODES} (off: eager)")
    return mode


def compile_module(module: nn.Module, mode: str) -> nn.Module:
    """``module`` itself for ``off``, else its ``torch.compile`` wrapper with the ``mode`` backend.

    The wrapper shares the module's parameters and buffers (its ``state_dict`` adds ``_orig_mod.`` to every
    key: save the module, not the wrapper).
    """
    if check_compile_mode(mode) == "off":
        return module
    return torch.compile(module, backend=mode)

