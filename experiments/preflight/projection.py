"""From a stage's measurements to what a cluster user asks (torch-free except FLOP counts outside the table).

- **memory at the recipe's per-GPU batch** on ``--gpu``: measured when the stage ran on CUDA at that batch;
  otherwise extrapolated, and said so: the task's state (weights, gradients, optimizer state, counted on its
  tensors) plus the measured per-image remainder of the peak times the recipe's batch. A CPU run measures fp32
  activations; bf16 autocast on a GPU stores fewer, so the extrapolation is an upper bound. With one step the
  optimizer state is created by that step's update, after the backward pass freed the activations, so the peak
  never held both: the remainder is then taken over weights and gradients only (an upper bound again: it is the
  optimizer state's share when that allocation was the peak, and then a loose one: MixMIM-B pre-training 62 GB at
  batch 128 from one step at batch 2, 22.6 GB from two steps); subtracting the whole state had undercounted the
  activations (3.7 GB). An upper bound above the GPU's memory is no verdict ("?"): ``--steps 2`` measures it.
- **loader workers needed**: the per-GPU images/s the step consumes (measured on CUDA; on CPU the FLOP estimate's
  rate on ``--gpu``) over the loader's measured images/s per worker, rounded up.
- **disk**: the checkpoint (and encoder) files the stage wrote, times the files each covered run keeps (``last``
  plus one per ``checkpoint_every`` epochs; pre-training also ``encoder.pth``), against the free space of the
  output filesystem.
- **hours**: the stage's images (:func:`experiments.cost.stage_images`) at the measured step rate (on CUDA:
  GPU-hours; on CPU: hours of this CPU, one process), beside the FLOP estimate on ``--gpu``
  (:func:`experiments.cost.stage_cost`); on CUDA also the achieved TFLOP/s and MFU of the measured step.
"""

from __future__ import annotations

import math
import shutil
import statistics
from pathlib import Path
from typing import Any

from experiments.cost import DEFAULT_MFU, TRAIN_PASSES, forward_gflops, peak_tflops, stage_cost, stage_images
from experiments.preflight.rows import recipe_batch, run_precision
from mixmim.config import RunConfig

UPPER_BOUND = ", 1 step: optimizer state not yet resident (upper bound)"


def median_step(times: list[float]) -> tuple[float | None, str]:
    """The median step time after the first (warm-up) step, and what it is; the only step when there is one."""
    if not times:
        return None, "no steps"
    if len(times) == 1:
        return times[0], "1 step (includes warm-up)"
    return statistics.median(times[1:]), f"median of {len(times) - 1} steps after 1 warm-up"


def gpu_memory_bytes(gpu: str) -> float | None:
    """Memory of ``gpu`` in bytes (:data:`mixmim.bench.peaks.MEMORY_GB`), or None for an unknown GPU."""
    from experiments.budget import gpu_matches
    from mixmim.bench.peaks import MEMORY_GB

    found = [gb for p, gb in MEMORY_GB.items() if gpu_matches(p, gpu) or gpu_matches(gpu, p)]
    return found[0] * 1e9 if found else None


def memory_at_recipe(row: dict[str, Any], batch: int) -> tuple[float | None, str]:
    """Bytes at the recipe's per-GPU ``batch`` and how they were obtained (see the module docstring)."""
    peak, measured_batch = row.get("peak_bytes"), row.get("batch_size")
    if peak is None or not measured_batch:
        return None, "not measured"
    if row.get("device", "cpu") != "cpu" and measured_batch == batch:
        return float(peak), "measured (CUDA max allocated)"
    state = float(row.get("state_bytes") or 0)
    one_step = len(row.get("step_times_s") or []) == 1
    held = state - (float(row.get("optimizer_bytes") or 0) if one_step else 0.0)  # resident at the activation peak
    per_image = max(0.0, peak - float(row.get("start_bytes") or 0) - held) / measured_batch
    basis = f"extrapolated from {row.get('device')} batch {measured_batch} ({row.get('precision')})"
    return state + per_image * batch, basis + (UPPER_BOUND if one_step else "")


def checkpoints_kept(cfg: RunConfig, stage: str) -> int:
    """Checkpoint files a run keeps for ``stage`` (``last`` + the per-``checkpoint_every`` ones)."""
    section = getattr(cfg, stage, None)
    every, epochs = getattr(section, "checkpoint_every", 0), getattr(section, "epochs", 0)
    return 1 + (epochs // every if every else 0)


def project(row: dict[str, Any], cfg: RunConfig, runs: list[RunConfig], stage: str, gpu: str,
            output: Path) -> dict[str, Any]:  # fmt: skip
    """The projections of one measured stage row (``cfg``: the first covered run; ``runs``: all covered)."""
    out: dict[str, Any] = {"gpu": gpu}
    step, basis = median_step(row.get("step_times_s") or [])
    out["step_time_s"], out["step_basis"] = step, basis
    batch = row.get("batch_size")
    if step and batch:
        out["images_per_s_step"] = batch / step
    target = recipe_batch(cfg, stage)
    out["recipe_batch"] = target
    out["recipe_precision"] = run_precision(cfg, stage)
    if target:
        need, how = memory_at_recipe(row, target)
        capacity = gpu_memory_bytes(gpu)
        fits = None if need is None or capacity is None else need <= capacity
        if fits is False and how.endswith(UPPER_BOUND):
            fits = None  # an upper bound above the GPU's memory says nothing: "?" (run --steps 2)
        out.update(memory_at_recipe_bytes=need, memory_basis=how, gpu_memory_bytes=capacity, fits=fits)
    try:
        gflops, _ = forward_gflops(cfg, stage) if stage in ("pretrain", "finetune", "linprobe", "knn") else (None, "")
    except Exception:  # noqa: BLE001 - a model that cannot be counted leaves the FLOP columns empty
        gflops = None
    passes = 1 if stage in ("linprobe", "knn") else TRAIN_PASSES
    cuda = row.get("device", "cpu") != "cpu"
    gpu_rate = None
    if gflops:
        gpu_rate = DEFAULT_MFU * peak_tflops(gpu, out["recipe_precision"]) * 1e12 / (2 * passes * gflops * 1e9)
        if cuda and out.get("images_per_s_step"):
            achieved = 2 * passes * gflops * 1e9 * out["images_per_s_step"] / 1e12
            out["tflops"] = achieved
            out["mfu"] = achieved / peak_tflops(row["device"], row.get("precision", "bf16"))
    consumed = out.get("images_per_s_step") if cuda else gpu_rate
    loader = row.get("loader_images_per_s")
    if consumed and loader:
        out["workers_needed"] = math.ceil(consumed / loader)
        out["workers_basis"] = "measured step" if cuda else f"estimated {gpu} rate (MFU {DEFAULT_MFU})"
    files = (row.get("checkpoint_bytes") or 0) + (row.get("encoder_bytes") or 0)
    out["disk_bytes"] = sum(files + (checkpoints_kept(c, stage) - 1) * (row.get("checkpoint_bytes") or 0) for c in runs)
    out["disk_free_bytes"] = shutil.disk_usage(_existing(output)).free
    if stage in ("pretrain", "finetune", "linprobe", "knn"):
        images, _ = stage_images(cfg, stage)
        rate = out.get("images_per_s_step") or row.get("images_per_s")
        if rate:
            out["hours_measured"] = images / rate / 3600
            out["hours_unit"] = "GPU-hours" if cuda else "CPU-hours (1 process)"
        estimate = stage_cost(cfg, stage, gpu, [], DEFAULT_MFU)
        out["gpu_hours_estimate"] = estimate.gpu_hours
    return out


def _existing(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path
