"""Time ``Trainer`` steps: the body of the one training loop on each method's real pre-training task.

:func:`bench_trainer` builds what ``pretrain`` builds (a :class:`~mixmim.pretrain.task.PretrainTask`: the
method's parameter groups with their weight decay and ``lr_scale``, its AdamW with the recipe's betas, the lr
schedule, clipping, precision and the fp16 scaler) and a :class:`~mixmim.engine.trainer.Trainer` over it in
a temporary stage folder, single process. :func:`benchmark_variants` times
:meth:`~mixmim.engine.trainer.Trainer.train_batch` on a synthetic batch already on the device, so the
figures are those of the code that trains (the data pipeline is timed apart: :mod:`mixmim.bench.data`).
Nothing is written inside the timed region: no checkpoint (the epoch never ends and step checkpoints are
off) and no metric record (the logging period is beyond the steps the trainer runs). What the figures mean:
:mod:`mixmim.bench.measure`.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mixmim.backbones.attention import get_attention_impl
from mixmim.bench.measure import StepSetup, StepStats, VariantTimes, attention_impl, method_flops, summarise
from mixmim.config import RunConfig, apply_overrides
from mixmim.engine.distributed import DistEnv
from mixmim.engine.host_memory import HostMemorySampler
from mixmim.engine.optim import ADAMW_IMPLS
from mixmim.engine.trainer import Trainer
from mixmim.pretrain.task import STAGE, PretrainTask

OPTIMIZERS = tuple(i for i in ADAMW_IMPLS if i != "auto")  # "fused" is what "auto" runs on CPU and CUDA
COMPILE_BACKEND = "inductor"  # what compile=True times (pretrain.compile); tests swap in a cheaper backend


class SyntheticImages(Dataset):
    """``length`` samples ``(image [3, H, W] ~ N(0, 1), label 0)``, image ``i`` drawn from ``seed + i``.

    The benchmark's training set: its length sets the recipe's steps per epoch (hence the lr schedule); the
    timed batches are built once, on the device, and never go through a loader.
    """

    def __init__(self, length: int, img_size: int, seed: int = 0):
        self.length, self.img_size, self.seed = length, img_size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        generator = torch.Generator().manual_seed(self.seed + index)
        return torch.randn(3, self.img_size, self.img_size, generator=generator), 0


def bench_trainer(
    method: nn.Module,
    cfg: RunConfig,
    batch_size: int,
    img_size: int,
    precision: str,
    device: torch.device,
    stage_dir: Path,
    epoch_images: int,
    adamw: str = "fused",
    log_every: int = 1_000_000,
    compile: str = "off",
) -> Trainer:
    """A single-process :class:`Trainer` over the pre-training task of ``method`` in ``stage_dir``.

    Args:
        cfg: the method's run config: its ``pretrain`` recipe (weight decay, betas, official quirks, blr,
            schedule, accumulation, ``clip_grad``) is what the task trains with; ``batch_size`` (per micro-batch)
            and ``precision`` replace the recipe's, and step checkpoints are turned off.
        epoch_images: the training set's length (``SyntheticImages``): with the batch it sets the steps per
            epoch, so the schedule is that of a run over that many images.
        adamw: how the task's AdamW runs its update (:data:`OPTIMIZERS`).
        log_every: the trainer's logging period in optimizer steps; beyond the steps it will run, nothing is
            logged (no host read, no metric written).
        compile: ``pretrain.compile`` of the task (``mixmim.engine.compile``): the trainer compiles its forward.
    """
    if adamw not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {adamw!r}")
    overrides = {
        "pretrain.batch_size": batch_size,
        "pretrain.precision": precision,
        "pretrain.checkpoint_every_steps": 0,
        "pretrain.compile": compile,
    }
    cfg = apply_overrides(cfg, overrides)
    env = DistEnv()
    task = PretrainTask(
        method, SyntheticImages(epoch_images, img_size), cfg, Path(stage_dir).parent, env, device, adamw=adamw
    )
    return Trainer(task, cfg.seed, Path(stage_dir), "bench", env, device, num_workers=0, log_every=log_every)


@dataclass(frozen=True)
class StepOptions:
    """How :func:`benchmark_variants` times a method: one value shared by all its variants.

    Attributes:
        batch_size: images per micro-batch, on the device.
        img_size: px of the synthetic images (the method's backbone resolution).
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast; fp16 with a GradScaler, CUDA only).
        device: where the method trains.
        steps: timed steps per variant (the median is reported); at least 1.
        warmup: untimed steps per variant first; at least 1 (the first step allocates the optimizer state).
        compile: the trainers compile their forward with :data:`COMPILE_BACKEND` (``pretrain.compile``; the
            ``grouped`` attention then runs its dense path: its token sort is host work whose shapes change
            every step).
        peak_tflops: the device's dense peak for MFU; default: :data:`~mixmim.bench.peaks.PEAK_TFLOPS` (CUDA only).
        seed: the synthetic batch's and the per-step reseeding's seed (step ``s`` of every variant: ``seed + s``).
        forward_flops: FLOPs per image of one forward (default: counted with :func:`method_flops`).
        cfg: the method's run config (its ``pretrain`` recipe); default ``RunConfig()`` (MixMIM's recipe).
        epoch_images: images of an epoch (sets the schedule); default: one epoch of the benchmark's own steps.

    Raises:
        ValueError: fp16 off CUDA, or fewer than one timed or warm-up step.
    """

    batch_size: int
    img_size: int
    precision: str = "fp32"
    device: str | torch.device = "cpu"
    steps: int = 10
    warmup: int = 3
    compile: bool = False
    peak_tflops: float | None = None
    seed: int = 0
    forward_flops: float | None = None
    cfg: RunConfig | None = None
    epoch_images: int | None = None

    def __post_init__(self) -> None:
        if self.precision == "fp16" and torch.device(self.device).type != "cuda":
            raise ValueError("fp16 needs a CUDA device (use fp32 or bf16 on the CPU)")
        if self.steps < 1 or self.warmup < 1:
            raise ValueError("steps and warmup must be at least 1 (the first step allocates the optimizer state)")


def benchmark_step(method: nn.Module, options: StepOptions, optimizer: str = "fused") -> StepStats:
    """Time ``Trainer`` steps of ``method`` with the default attention; see :func:`benchmark_variants`."""
    return benchmark_variants(method, [(get_attention_impl(), optimizer)], options)[0]


def benchmark_variants(
    method: nn.Module, variants: Sequence[tuple[str, str]], options: StepOptions
) -> list[StepStats]:
    """Time ``Trainer`` steps of ``method`` for every (attention impl, AdamW kind), steps interleaved.

    One trainer per AdamW kind (:func:`bench_trainer`), shared by that kind's attention variants. Each variant
    first runs ``options.warmup`` untimed steps; then the timed steps go round-robin over the variants (step
    ``s`` of every variant draws the same mask and drop path: the task is reseeded with ``seed + s``), so slow
    phases of a shared machine hit every variant alike. A step is one optimizer step: ``accum_iter`` calls of
    :meth:`Trainer.train_batch`. Time is the median over a variant's steps. The method's weights and
    generator are left changed (build a fresh one for training).

    Args:
        method: ``forward(images [B, 3, H, W]) -> {"loss": ...}``; moved to ``options.device``.
        variants: (``ATTENTION_IMPLS`` name or ``BOUND_IMPL``, :data:`OPTIMIZERS` name) pairs.
        options: batch, resolution, precision, device, step counts, compile and the figures' inputs.
    """
    device = torch.device(options.device)
    cfg = options.cfg if options.cfg is not None else RunConfig()
    method = method.to(device).train()
    flops = method_flops(method, options.img_size, device) if options.forward_flops is None else options.forward_flops
    b, size = options.batch_size, options.img_size
    images = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(options.seed))
    images, labels = images.to(device), torch.zeros(b, dtype=torch.long, device=device)
    runs = [VariantTimes(impl, kind) for impl, kind in variants]
    per_kind = Counter(kind for _, kind in variants)
    calls = (options.warmup + options.steps) * max(per_kind.values()) * cfg.pretrain.accum_iter  # of a trainer
    with tempfile.TemporaryDirectory(prefix="mixmim-bench-") as tmp:
        trainers = {
            kind: bench_trainer(
                method,
                cfg,
                b,
                size,
                options.precision,
                device,
                Path(tmp) / kind / STAGE,
                options.epoch_images or calls * b,
                kind,
                log_every=calls + 1,
                compile=COMPILE_BACKEND if options.compile else "off",
            )
            for kind in per_kind
        }
        memory_kind = _time_variants(runs, trainers, images, labels, options)
        for trainer in trainers.values():
            trainer.metrics.close()
    first = next(iter(trainers.values()))
    setup = StepSetup(
        batch_size=b,
        accum_iter=first.recipe.accum_iter,
        img_size=size,
        precision=options.precision,
        device=device,
        compiled=options.compile,
        warmup=options.warmup,
        forward_flops=flops,
        peak_tflops=options.peak_tflops,
        memory_kind=memory_kind,
        params=sum(p.numel() for p in method.parameters()),
        param_groups=len(first.optimizer.param_groups),
        clip_grad=first.task.clip_grad,
    )
    return [summarise(setup, run) for run in runs]


def _time_variants(
    runs: list[VariantTimes],
    trainers: dict[str, Trainer],
    images: torch.Tensor,
    labels: torch.Tensor,
    options: StepOptions,
) -> str:
    """Warm every variant up, then time ``options.steps`` steps round-robin; fill each run's times and memory
    and return what the memory figure counts (``memory_kind``, :mod:`mixmim.bench.measure`)."""
    device, steps, warmup, seed = images.device, options.steps, options.warmup, options.seed
    timings: list[list[Any]] = [[] for _ in runs]
    with HostMemorySampler() as host:
        for run in runs:
            for i in range(warmup):
                start = time.perf_counter()
                loss = _timed_step(trainers[run.optimizer], images, labels, run.attention, host, seed + i)[-1]
                if i == 0:  # includes compilation with compile=True
                    _synchronize(device)
                    run.first_step_s = time.perf_counter() - start
                    run.first_loss = loss.item()  # untimed: a host read
        for s in range(steps):
            for run, timing in zip(runs, timings):
                measured, cpu_ms, transient, _ = _timed_step(
                    trainers[run.optimizer], images, labels, run.attention, host, seed + warmup + s
                )
                timing.append(measured)
                run.cpu_ms.extend([cpu_ms] if cpu_ms is not None else [])
                run.transient = max(run.transient, transient)
        _synchronize(device)
    for run, timing in zip(runs, timings):
        run.ms = [_milliseconds(t) for t in timing]
        others = sum(_state_bytes(t.optimizer) for kind, t in trainers.items() if kind != run.optimizer)
        run.base = (
            torch.cuda.memory_allocated(device) - others
            if device.type == "cuda"
            else _state_bytes(trainers[run.optimizer].optimizer)
        )
    return "cuda_allocated" if device.type == "cuda" else f"cpu_{host.kind}_step_peak+optimizer_state"


def _timed_step(
    trainer: Trainer, images: torch.Tensor, labels: torch.Tensor, impl: str, host: HostMemorySampler, seed: int
) -> tuple[Any, float | None, int, torch.Tensor]:
    """One optimizer step of ``trainer`` (``accum_iter`` calls of ``train_batch``) with attention ``impl``.

    Returns (ms, or a CUDA event pair read after the final synchronisation; CPU ms or None on CUDA; bytes the
    step added at its peak; the last micro-batch's loss, on the device, unread). The allocator statistics are
    host-side, so CUDA needs no synchronisation per step.
    """
    trainer.task.reseed(seed)
    device = images.device
    with attention_impl(impl):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            events[0].record()
            loss = _optimizer_step(trainer, images, labels)
            events[1].record()
            return events, None, torch.cuda.max_memory_allocated(device) - before, loss
        host.mark()
        before = host.read()
        w0, c0 = time.perf_counter(), time.process_time()
        loss = _optimizer_step(trainer, images, labels)
        wall, cpu = 1e3 * (time.perf_counter() - w0), 1e3 * (time.process_time() - c0)
        return wall, cpu, host.mark() - before, loss


def _optimizer_step(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loop body ``accum_iter`` times: the last call ends the accumulation group with the optimizer step;
    returns the last micro-batch's loss (on the device)."""
    for _ in range(trainer.recipe.accum_iter):
        loss = trainer.train_batch(images, labels)
    return loss


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _milliseconds(timing: Any) -> float:
    """A CPU time in ms, or the elapsed ms of a recorded CUDA event pair."""
    return timing[0].elapsed_time(timing[1]) if isinstance(timing, tuple) else timing


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (AdamW: two moments per parameter)."""
    states = optimizer.state.values()
    return sum(t.numel() * t.element_size() for st in states for t in st.values() if isinstance(t, torch.Tensor))
