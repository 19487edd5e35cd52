"""What the benchmark's figures mean, and the summary of one variant's timed steps.

- **Time**: CUDA events around every step on GPU; wall clock (``time.perf_counter``) on CPU, plus the
  process CPU time (``time.process_time``; with one thread it is far less sensitive than wall time to other
  processes sharing the cores). A step is one optimizer step of the trainer: ``accum_iter`` calls of
  :meth:`~mixmim.engine.trainer.Trainer.train_batch`.
- **Memory**: on CUDA the peak of ``torch.cuda.memory_allocated`` (``max_memory_allocated``) within the
  variant's steps, counting the weights, its own optimizer state, gradients and activations (the caching
  allocator's reserve is not counted; other variants' optimizer states are subtracted). On CPU the peak
  of glibc's bytes in use (``mallinfo2``, sampled every 5 ms; the resident set size without glibc) within
  one of its steps minus the value just before that step, plus its optimizer state: what training adds to
  the built model (gradients, activations, optimizer state), not the weights or the Python runtime. Bytes
  in use stay right when freed memory is kept (``mixmim.engine.host_memory``); the resident set does not.
- **FLOPs** (:func:`method_flops`): fvcore convention (a multiply-add is one FLOP, ``mixmim.bench.flops``) of one
  forward pass of the method per image, with the masked attention counted in the official dense
  formulation whatever attention implementation runs (model FLOPs, the same numerator for every variant);
  a training step counts 3x the forward.
- **MFU**: ``2 x training FLOPs per image x images/s / peak`` (the 2 turns fvcore multiply-adds into the
  FLOPs of vendors' peak figures). Peaks are dense (no sparsity) tensor-core figures from NVIDIA's data
  sheets (:data:`~mixmim.bench.peaks.PEAK_TFLOPS`) unless the caller gives one; fp32 uses the TF32 peak only when
  TF32 matmuls are enabled, else the plain fp32 peak. No peak is assumed for CPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mixmim.backbones.attention import attention_impl as backbone_attention_impl
from mixmim.bench.flops import count_flops
from mixmim.bench.peaks import PEAK_TFLOPS  # torch-free, so that cost projections read it without the model stack

TIMED_STEP = "Trainer.train_batch"  # what a row's time measures (rows before issue 14 timed a step of their own)


@dataclass
class StepStats:
    """One benchmarked configuration. Times in ms, memory in MiB, FLOPs per image (fvcore convention)."""

    attention: str
    batch_size: int  # per micro-batch (a step holds accum_iter of them)
    img_size: int
    precision: str
    device: str
    device_name: str
    optimizer: str  # adamw-<kind>: how the task's AdamW runs its update (mixmim.engine.optim.ADAMW_IMPLS)
    compiled: bool
    steps: int
    warmup: int
    ms_per_step: float  # median over the timed steps
    ms_min: float
    ms_max: float
    images_per_s: float
    cpu_ms_per_step: float | None  # CPU only: median process CPU time per step
    first_step_s: float  # the first warm-up step (includes compilation with compile=True)
    first_loss: float  # the loss of the first warm-up step: eager and compiled rows of a method start alike
    peak_memory_mib: float
    memory_kind: str  # cuda_allocated | cpu_heap_in_use_step_peak+optimizer_state | cpu_rss_... (docstring)
    params: int
    forward_gflops_per_image: float
    train_gflops_per_image: float
    achieved_tflops: float  # 2 x train FLOPs x images/s (vendor convention: a multiply-add is 2 FLOPs)
    peak_tflops: float | None
    mfu: float | None
    threads: int
    timed_step: str = TIMED_STEP
    accum_iter: int = 1  # micro-batches per optimizer step (the recipe's)
    param_groups: int = 0  # of the task's optimizer
    clip_grad: float = 0.0  # the recipe's clipping norm (0: none)

    def as_row(self) -> dict[str, Any]:
        """A flat dict (for tables and JSON lines)."""
        return dataclasses.asdict(self)


@dataclass
class VariantTimes:
    """What the timed steps of one (attention implementation, AdamW kind) measured."""

    attention: str
    optimizer: str
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    transient: int = 0  # bytes: the largest growth of memory within one of its steps
    base: int = 0  # bytes: what stays allocated between its steps (see the module docstring)
    first_step_s: float = 0.0
    first_loss: float = float("nan")


@dataclass(frozen=True)
class StepSetup:
    """What every variant of one benchmark shares: the shape of a step and the FLOPs it does."""

    batch_size: int
    accum_iter: int
    img_size: int
    precision: str
    device: torch.device
    compiled: bool
    warmup: int
    forward_flops: float
    peak_tflops: float | None
    memory_kind: str
    params: int
    param_groups: int
    clip_grad: float


def peak_tflops_for(device: torch.device, precision: str) -> float | None:
    """Dense peak TFLOP/s of a CUDA ``device`` at ``precision`` from :data:`PEAK_TFLOPS` (None if unknown)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    kind = precision
    if precision == "fp32" and torch.backends.cuda.matmul.allow_tf32:
        kind = "tf32"
    for pattern, peaks in PEAK_TFLOPS.items():
        if pattern in name:
            return peaks.get(kind)
    return None


def attention_impl(impl: str) -> contextlib.AbstractContextManager[None]:
    """Temporarily change the default attention implementation (the benchmark's cost floor ``bound`` included)."""
    return backbone_attention_impl(impl, allow_bound=True)


def method_flops(method: nn.Module, img_size: int, device: torch.device | str = "cpu") -> float:
    """fvcore-convention FLOPs of one forward pass of ``method`` per image (dense official attention).

    Counted on a batch of 2 (MixMIM pairs each image with a partner), without gradients, in eval mode.
    """
    images = torch.randn(2, 3, img_size, img_size, device=device)
    was_training = method.training
    method.eval()
    try:
        with attention_impl("official"):
            return count_flops(method, images, forward=lambda x: method(x)) / 2
    finally:
        method.train(was_training)


def summarise(setup: StepSetup, run: VariantTimes) -> StepStats:
    """A variant's timed steps as figures: median time, throughput, FLOPs, MFU, memory."""
    device = setup.device
    median = statistics.median(run.ms)
    images_per_s = setup.batch_size * setup.accum_iter / (median / 1e3)
    train_flops = 3 * setup.forward_flops
    achieved = 2 * train_flops * images_per_s / 1e12
    peak = setup.peak_tflops if setup.peak_tflops is not None else peak_tflops_for(device, setup.precision)
    is_cuda = device.type == "cuda"
    return StepStats(
        attention=run.attention,
        batch_size=setup.batch_size,
        img_size=setup.img_size,
        precision=setup.precision,
        device=device.type,
        device_name=torch.cuda.get_device_name(device) if is_cuda else cpu_name(),
        optimizer=f"adamw-{run.optimizer}",
        compiled=setup.compiled,
        steps=len(run.ms),
        warmup=setup.warmup,
        ms_per_step=median,
        ms_min=min(run.ms),
        ms_max=max(run.ms),
        images_per_s=images_per_s,
        cpu_ms_per_step=statistics.median(run.cpu_ms) if run.cpu_ms else None,
        first_step_s=run.first_step_s,
        first_loss=run.first_loss,
        peak_memory_mib=(run.base + run.transient) / 2**20,
        memory_kind=setup.memory_kind,
        params=setup.params,
        forward_gflops_per_image=setup.forward_flops / 1e9,
        train_gflops_per_image=train_flops / 1e9,
        achieved_tflops=achieved,
        peak_tflops=peak,
        mfu=achieved / peak if peak else None,
        threads=torch.get_num_threads(),
        accum_iter=setup.accum_iter,
        param_groups=setup.param_groups,
        clip_grad=setup.clip_grad,
    )


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"
