"""Throughput of a training step and of the data pipeline, measured the same way for every method.

:func:`benchmark_step` times full training steps (forward, backward, AdamW step) of any method with
``forward(images) -> {"loss": ...}`` after warm-up and reports the median; :func:`benchmark_data` times
decode + augmentation. What the numbers mean:

- **Time**: CUDA events around every step on GPU (read after one synchronisation at the end); wall clock
  (``time.perf_counter``) on CPU, plus the process CPU time (``time.process_time``), which is far less
  sensitive than wall time to other processes sharing the cores.
- **Memory**: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps (absolute: weights,
  gradients, optimizer state, activations; the allocator's cache is not counted). On CPU the peak resident
  set size sampled every 5 ms during warm-up and timed steps (``/proc/self/statm``), minus the resident size
  just before the first step: what training adds to the built model (gradients, optimizer state,
  activations and the allocator's retained memory), not the weights or the Python runtime.
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
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mixmim.backbones.attention import get_attention_impl, set_attention_impl
from mixmim.engine.precision import autocast, grad_scaler
from mixmim.flops import count_flops

# Dense peak TFLOP/s by (device-name pattern, precision): NVIDIA data sheets (H200 / H100 SXM: bf16 989.4,
# tf32 494.7, fp32 66.9; H100 PCIe: 756 / 378 / 51.2; A100: 312 / 156 / 19.5; L40S: 362.1 / 183 / 91.6;
# A10(G): 125 / 62.5 / 31.2; V100: fp16 125, fp32 15.7, no bf16). The first matching pattern wins, so the
# more specific names come first. fp16 dense equals bf16 on these parts.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6},
    "A10": {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2},
    "V100": {"fp16": 125.0, "fp32": 15.7},
}
OPTIMIZERS = ("fused", "foreach", "single", "default")  # default: what torch.optim.AdamW picks by itself
RSS_SAMPLE_S = 0.005
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


@dataclass
class StepStats:
    """One benchmarked configuration. Times in ms, memory in MiB, FLOPs per image (fvcore convention)."""

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
    memory_kind: str  # cuda_max_allocated | cpu_rss_peak_delta
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
    """Temporarily change the default attention implementation (``mixmim.backbones.attention``)."""
    previous = get_attention_impl()
    set_attention_impl(impl)
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


def keep_freed_memory() -> bool:
    """CPU: make glibc keep freed memory for reuse (no ``mmap`` per large block, no trimming).

    By default every tensor above glibc's mmap threshold (at most 32 MiB) is a fresh ``mmap``, so each step
    page-faults its activations in again (about a million faults per MixMIM-B step at batch 8 on CPU).
    Exact (same numbers), process-wide and irreversible; the equivalent for a launched job is the environment
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``. Returns False where it does not apply (no glibc).
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)))


class RssSampler:
    """Peak resident set size of this process, sampled in a thread (Linux ``/proc/self/statm``)."""

    def __init__(self, interval_s: float = RSS_SAMPLE_S):
        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.start = self.peak = self.read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> int:
        """Current resident set size in bytes (0 where /proc is missing)."""
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self.page
        except OSError:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.read())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20


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


def _time_steps(step: Callable[[], None], steps: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Per-step (ms, CPU ms): CUDA events on GPU (CPU ms empty), wall and process time on CPU."""
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(steps)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events], []
    wall, cpu = [], []
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(1e3 * (time.perf_counter() - w0))
        cpu.append(1e3 * (time.process_time() - c0))
    return wall, cpu


def benchmark_step(method: nn.Module, batch_size: int, img_size: int, precision: str = "fp32",
                   device: str | torch.device = "cpu", steps: int = 10, warmup: int = 3, compile: bool = False,
                   optimizer: str = "fused", peak_tflops: float | None = None, seed: int = 0,
                   forward_flops: float | None = None) -> StepStats:
    """Time full training steps of ``method`` on random images; median over ``steps`` after ``warmup``.

    Args:
        method: ``forward(images [B, 3, H, W]) -> {"loss": ...}``; masks come from its own generator (reseeded
            with ``seed`` when it has ``reseed``, so two variants see the same masks). Moved to ``device``.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast; fp16 with a GradScaler, CUDA only).
        optimizer: see :func:`build_optimizer` (``fused`` by default: the fastest exact AdamW).
        peak_tflops: the device's dense peak for MFU; default: :data:`PEAK_TFLOPS` (CUDA only).
        forward_flops: FLOPs per image of one forward (default: counted with :func:`method_flops`).
    """
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA device (use fp32 or bf16 on the CPU)")
    if steps < 1 or warmup < 1:
        raise ValueError("steps and warmup must be at least 1 (the first step allocates the optimizer state)")
    method = method.to(device).train()
    if forward_flops is None:
        forward_flops = method_flops(method, img_size, device)
    if hasattr(method, "reseed"):
        method.reseed(seed)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    images = images.to(device)
    opt = build_optimizer(method, optimizer, device)
    step = _step_fn(torch.compile(method) if compile else method, opt, images, precision, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with RssSampler() as rss:
        first = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        first_step_s = time.perf_counter() - first
        for _ in range(warmup - 1):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        ms, cpu_ms = _time_steps(step, steps, device)
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss.delta_mib
    return _stats(method, batch_size, img_size, precision, device, optimizer, compile, warmup, ms, cpu_ms,
                  first_step_s, memory, forward_flops, peak_tflops)


def _stats(method: nn.Module, batch_size: int, img_size: int, precision: str, device: torch.device,
           optimizer: str, compiled: bool, warmup: int, ms: Sequence[float], cpu_ms: Sequence[float],
           first_step_s: float, memory_mib: float, forward_flops: float, peak: float | None) -> StepStats:
    """Summarise timed steps into a :class:`StepStats` (median time, throughput, FLOPs, MFU)."""
    median = statistics.median(ms)
    images_per_s = batch_size / (median / 1e3)
    train_flops = 3 * forward_flops
    achieved = 2 * train_flops * images_per_s / 1e12
    peak = peak if peak is not None else peak_tflops_for(device, precision)
    is_cuda = device.type == "cuda"
    return StepStats(
        batch_size=batch_size, img_size=img_size, precision=precision, device=device.type,
        device_name=torch.cuda.get_device_name(device) if is_cuda else _cpu_name(),
        optimizer=f"adamw-{optimizer}", compiled=compiled, steps=len(ms), warmup=warmup,
        ms_per_step=median, ms_min=min(ms), ms_max=max(ms), images_per_s=images_per_s,
        cpu_ms_per_step=statistics.median(cpu_ms) if cpu_ms else None, first_step_s=first_step_s,
        peak_memory_mib=memory_mib, memory_kind="cuda_max_allocated" if is_cuda else "cpu_rss_peak_delta",
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
