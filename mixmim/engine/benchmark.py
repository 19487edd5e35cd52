"""Throughput of a training step and of the data pipeline, measured the same way for every method.

:func:`benchmark_step` times full training steps (forward, backward, AdamW step) of any method with
``forward(images) -> {"loss": ...}`` after warm-up and reports the median; :func:`benchmark_data` times
decode + augmentation. What the numbers mean:

- **Time**: CUDA events around every step on GPU; wall clock (``time.perf_counter``) on CPU, plus the
  process CPU time (``time.process_time``; with one thread it is far less sensitive than wall time to other
  processes sharing the cores). Several variants (attention implementation x AdamW kind) are timed with
  their steps interleaved, so a slow phase of a shared machine hits them alike.
- **Memory**: on CUDA the peak of ``torch.cuda.memory_allocated`` (``max_memory_allocated``) within the
  variant's steps, counting the weights, its own optimizer state, gradients and activations (the caching
  allocator's reserve is not counted; other variants' optimizer states are subtracted). On CPU the peak
  of glibc's bytes in use (``mallinfo2``, sampled every 5 ms; the resident set size without glibc) within
  one of its steps minus the value just before that step, plus its optimizer state: what training adds to
  the built model (gradients, activations, optimizer state), not the weights or the Python runtime. Bytes
  in use stay right when freed memory is kept (``mixmim.engine.host_memory``); the resident set does not.
- **FLOPs** (:func:`method_flops`): fvcore convention (a multiply-add is one FLOP, ``mixmim.flops``) of one
  forward pass of the method per image, with the masked attention counted in the official dense
  formulation whatever attention implementation runs (model FLOPs, the same numerator for every variant);
  a training step counts 3x the forward.
- **MFU**: ``2 x training FLOPs per image x images/s / peak`` (the 2 turns fvcore multiply-adds into the
  FLOPs of vendors' peak figures). Peaks are dense (no sparsity) tensor-core figures from NVIDIA's data
  sheets (:data:`PEAK_TFLOPS`) unless the caller gives one; fp32 uses the TF32 peak only when TF32 matmuls
  are enabled, else the plain fp32 peak. No peak is assumed for CPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mixmim.backbones.attention import get_attention_impl, set_attention_impl
from mixmim.engine.host_memory import HostMemorySampler
from mixmim.engine.precision import autocast, grad_scaler
from mixmim.flops import count_flops
from mixmim.peaks import PEAK_TFLOPS  # torch-free, so that cost projections read it without the model stack

OPTIMIZERS = ("fused", "foreach", "single", "default")  # default: what torch.optim.AdamW picks by itself


@dataclass
class StepStats:
    """One benchmarked configuration. Times in ms, memory in MiB, FLOPs per image (fvcore convention)."""

    attention: str
    batch_size: int
    img_size: int
    precision: str
    device: str
    device_name: str
    optimizer: str
    compiled: bool
    steps: int
    warmup: int
    ms_per_step: float  # median over the timed steps
    ms_min: float
    ms_max: float
    images_per_s: float
    cpu_ms_per_step: float | None  # CPU only: median process CPU time per step
    first_step_s: float  # the first warm-up step (includes compilation with compile=True)
    peak_memory_mib: float
    memory_kind: str  # cuda_allocated | cpu_heap_in_use_step_peak+optimizer_state | cpu_rss_... (docstring)
    params: int
    forward_gflops_per_image: float
    train_gflops_per_image: float
    achieved_tflops: float  # 2 x train FLOPs x images/s (vendor convention: a multiply-add is 2 FLOPs)
    peak_tflops: float | None
    mfu: float | None
    threads: int

    def as_row(self) -> dict[str, Any]:
        """A flat dict (for tables and JSON lines)."""
        return dataclasses.asdict(self)


@dataclass
class DataStats:
    """Decode + augmentation throughput of a dataset through a DataLoader."""

    workers: int
    batch_size: int
    batches: int
    seconds: float
    images_per_s: float
    images_per_s_per_worker: float  # per process doing the decoding (the main process when workers=0)


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


@contextlib.contextmanager
def attention_impl(impl: str) -> Iterator[None]:
    """Temporarily change the default attention implementation (``mixmim.backbones.attention``; the
    benchmark's cost floor ``bound`` included)."""
    previous = get_attention_impl()
    set_attention_impl(impl, allow_bound=True)
    try:
        yield
    finally:
        set_attention_impl(previous)


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


def build_optimizer(method: nn.Module, kind: str, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (MixMIM's betas (0.9, 0.95), wd 0.05, a tiny lr).

    ``kind``: ``fused`` (one kernel for all parameters; CUDA and CPU), ``foreach`` (multi-tensor),
    ``single`` (a loop over parameters) or ``default`` (torch's own choice: foreach on CUDA, single on CPU;
    what the official code gets).
    """
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {kind!r}")
    params = [p for p in method.parameters() if p.requires_grad]
    options = {"fused": {"fused": True}, "foreach": {"foreach": True}, "single": {"foreach": False}}.get(kind, {})
    return torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.95), weight_decay=0.05, **options)


@dataclass
class _Variant:
    """One (attention implementation, AdamW kind) being timed, and what its steps measured."""

    attention: str
    optimizer: str
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    transient: int = 0  # bytes: the largest growth of memory within one of its steps
    base: int = 0  # bytes: what stays allocated between its steps (see _memory_mib)
    first_step_s: float = 0.0


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for st in optimizer.state.values() for t in st.values()
               if isinstance(t, torch.Tensor))


def benchmark_step(method: nn.Module, batch_size: int, img_size: int, precision: str = "fp32",
                   device: str | torch.device = "cpu", steps: int = 10, warmup: int = 3, compile: bool = False,
                   optimizer: str = "fused", peak_tflops: float | None = None, seed: int = 0,
                   forward_flops: float | None = None) -> StepStats:
    """Time full training steps of ``method`` with the default attention; see :func:`benchmark_variants`."""
    return benchmark_variants(method, [(get_attention_impl(), optimizer)], batch_size, img_size, precision,
                              device, steps, warmup, compile, peak_tflops, seed, forward_flops)[0]


def benchmark_variants(method: nn.Module, variants: Sequence[tuple[str, str]], batch_size: int, img_size: int,
                       precision: str = "fp32", device: str | torch.device = "cpu", steps: int = 10,
                       warmup: int = 3, compile: bool = False, peak_tflops: float | None = None, seed: int = 0,
                       forward_flops: float | None = None) -> list[StepStats]:
    """Time training steps of ``method`` for every (attention impl, AdamW kind), steps interleaved.

    Each variant first runs ``warmup`` untimed steps; then the timed steps go round-robin over the variants
    (step ``s`` of every variant draws the same mask: the method is reseeded with ``seed + s``), so slow
    phases of a shared machine hit every variant alike. Time is the median over a variant's steps. The
    method's generator is left reseeded (a benchmark changes the method's weights and RNG: build a fresh one
    for training).

    Args:
        method: ``forward(images [B, 3, H, W]) -> {"loss": ...}``; moved to ``device``.
        variants: (``ATTENTION_IMPLS`` name or ``BOUND_IMPL``, :data:`OPTIMIZERS` name) pairs; one AdamW
            per kind.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast; fp16 with a GradScaler, CUDA only).
        peak_tflops: the device's dense peak for MFU; default: :data:`PEAK_TFLOPS` (CUDA only).
        forward_flops: FLOPs per image of one forward (default: counted with :func:`method_flops`).
    """
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA device (use fp32 or bf16 on the CPU)")
    if steps < 1 or warmup < 1:
        raise ValueError("steps and warmup must be at least 1 (the first step allocates the optimizer state)")
    method = method.to(device).train()
    forward_flops = method_flops(method, img_size, device) if forward_flops is None else forward_flops
    images = torch.randn(batch_size, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    images = images.to(device)
    model = torch.compile(method) if compile else method
    optimizers = {kind: build_optimizer(method, kind, device) for _, kind in variants}
    runs = [_Variant(impl, kind) for impl, kind in variants]
    step_fns = {kind: _step_fn(model, opt, images, precision, device) for kind, opt in optimizers.items()}
    timings: dict[int, list[Any]] = {i: [] for i in range(len(runs))}
    with HostMemorySampler() as host:
        for run in runs:
            for i in range(warmup):
                first = time.perf_counter()
                _timed_step(step_fns[run.optimizer], run.attention, device, host, method, seed + i)
                if i == 0:  # includes compilation with compile=True
                    _synchronize(device)
                    run.first_step_s = time.perf_counter() - first
        for s in range(steps):
            for i, run in enumerate(runs):
                timing, cpu_ms, transient = _timed_step(step_fns[run.optimizer], run.attention, device, host,
                                                        method, seed + warmup + s)
                timings[i].append(timing)
                run.cpu_ms.extend([cpu_ms] if cpu_ms is not None else [])
                run.transient = max(run.transient, transient)
    _synchronize(device)
    for i, run in enumerate(runs):
        run.ms = [_milliseconds(t) for t in timings[i]]
        others = sum(_state_bytes(o) for kind, o in optimizers.items() if kind != run.optimizer)
        run.base = (torch.cuda.memory_allocated(device) - others if device.type == "cuda"
                    else _state_bytes(optimizers[run.optimizer]))
    memory_kind = "cuda_allocated" if device.type == "cuda" else f"cpu_{host.kind}_step_peak+optimizer_state"
    return [_stats(method, batch_size, img_size, precision, device, run, compile, warmup, forward_flops,
                   peak_tflops, memory_kind) for run in runs]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(model: Callable, optimizer: torch.optim.Optimizer, images: torch.Tensor, precision: str,
             device: torch.device) -> Callable[[], None]:
    """One training step: forward (autocast), backward (scaled for fp16), AdamW step, zero grads."""
    scaler = grad_scaler(precision, device)

    def step() -> None:
        with autocast(precision, device):
            loss = model(images)["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def _timed_step(step: Callable[[], None], impl: str, device: torch.device, host: HostMemorySampler,
                method: nn.Module, seed: int) -> tuple[Any, float | None, int]:
    """One step with attention ``impl``: (ms, or a CUDA event pair read after the final synchronisation;
    CPU ms or None on CUDA; bytes the step added at its peak). The allocator statistics are host-side, so
    CUDA needs no synchronisation per step."""
    if hasattr(method, "reseed"):
        method.reseed(seed)
    with attention_impl(impl):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            events[0].record()
            step()
            events[1].record()
            return events, None, torch.cuda.max_memory_allocated(device) - before
        host.mark()
        before = host.read()
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        wall, cpu = 1e3 * (time.perf_counter() - w0), 1e3 * (time.process_time() - c0)
        return wall, cpu, host.mark() - before


def _milliseconds(timing: Any) -> float:
    """A CPU time in ms, or the elapsed ms of a recorded CUDA event pair."""
    return timing[0].elapsed_time(timing[1]) if isinstance(timing, tuple) else timing


def _stats(method: nn.Module, batch_size: int, img_size: int, precision: str, device: torch.device, run: _Variant,
           compiled: bool, warmup: int, forward_flops: float, peak: float | None, memory_kind: str) -> StepStats:
    """Summarise a variant's timed steps (median time, throughput, FLOPs, MFU, memory)."""
    median = statistics.median(run.ms)
    images_per_s = batch_size / (median / 1e3)
    train_flops = 3 * forward_flops
    achieved = 2 * train_flops * images_per_s / 1e12
    peak = peak if peak is not None else peak_tflops_for(device, precision)
    is_cuda = device.type == "cuda"
    return StepStats(
        attention=run.attention, batch_size=batch_size, img_size=img_size, precision=precision,
        device=device.type, device_name=torch.cuda.get_device_name(device) if is_cuda else _cpu_name(),
        optimizer=f"adamw-{run.optimizer}", compiled=compiled, steps=len(run.ms), warmup=warmup,
        ms_per_step=median, ms_min=min(run.ms), ms_max=max(run.ms), images_per_s=images_per_s,
        cpu_ms_per_step=statistics.median(run.cpu_ms) if run.cpu_ms else None, first_step_s=run.first_step_s,
        peak_memory_mib=(run.base + run.transient) / 2**20,
        memory_kind=memory_kind,
        params=sum(p.numel() for p in method.parameters()), forward_gflops_per_image=forward_flops / 1e9,
        train_gflops_per_image=train_flops / 1e9, achieved_tflops=achieved, peak_tflops=peak,
        mfu=achieved / peak if peak else None, threads=torch.get_num_threads(),
    )


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


class _Transformed(Dataset):
    """``transform`` applied to the first element of every sample of ``dataset`` (in the worker)."""

    def __init__(self, dataset: Dataset, transform: Callable | None):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        image = sample[0] if isinstance(sample, tuple | list) else sample
        return self.transform(image) if self.transform is not None else image


def benchmark_data(dataset: Dataset, transform: Callable | None, workers: int, batches: int,
                   batch_size: int = 64, seed: int = 0) -> DataStats:
    """Images/s of decoding + ``transform`` through a DataLoader with ``workers`` processes.

    ``dataset`` yields raw samples (a PIL image, or a tuple starting with one: build it without a transform);
    the first batch (worker start-up) is not timed. ``images_per_s_per_worker`` divides by the processes
    that decode (``max(workers, 1)``).
    """
    if batches < 1:
        raise ValueError("batches must be at least 1")
    loader = DataLoader(_Transformed(dataset, transform), batch_size=batch_size, shuffle=True,
                        num_workers=workers, generator=torch.Generator().manual_seed(seed), drop_last=False)
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not timed
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        count += len(batch)
    seconds = time.perf_counter() - start
    rate = count / seconds if seconds > 0 else math.nan
    return DataStats(workers=workers, batch_size=batch_size, batches=batches, seconds=seconds,
                     images_per_s=rate, images_per_s_per_worker=rate / max(workers, 1))
