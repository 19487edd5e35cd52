"""What an experiment will cost before it is launched: GPU-hours and wall time per run and stage.

``mixmim-bench show EXP --cost`` and ``run --dry-run`` print :func:`cost_table`; ``report`` puts the measured
GPU-hours beside the projection. For each run and stage:

- **work**: images processed = images per epoch x epochs (``max_steps`` caps it); a training stage costs
  3 forward passes per image (forward + backward, the fvcore convention the benchmark uses), the linear
  probe 1 (frozen encoder), kNN 1 forward over the training and validation images.
- **throughput per GPU**, in order: a measured preflight row (``<output>/*/_preflight/rows.jsonl``,
  ``mixmim-bench preflight``) of the same stage shape on the chosen GPU at the run's precision and per-GPU batch
  (:func:`experiments.preflight.rows.find_preflight_row`), labelled ``preflight`` (the stage's own measured step;
  a line whose shape has preflight rows of another device says so); else a row of the benchmark store
  (``<output>/bench``, ``mixmim-bench bench``) measured on the chosen GPU for the run's method, backbone and
  precision (pre-training only: the benchmark times pre-training steps), labelled ``bench``; else an
  **estimate** from the forward FLOPs (the table below, or counted on the model, which loads torch) and an
  assumed MFU of the GPU's dense peak (``mixmim.bench.peaks.PEAK_TFLOPS``): ``images/s = MFU x peak / (2 x 3 x
  forward FLOPs)`` (the 2 turns multiply-adds into the FLOPs of vendors' peaks, as the benchmark's MFU does).
- **GPU-hours** = images x passes / throughput / 3600 (all GPUs together); **wall time** = GPU-hours / GPUs
  of the run (``launch.nodes x launch.gpus_per_node``), with perfect scaling (a lower bound).

Runs without GPUs (``launch.gpus_per_node=0``: the debug variants, ``smoke``) cost no GPU-hours; their
rows say so. BEiT's ``tokenizer`` stage costs next to nothing; ``coco`` has no cost model and is listed as
not estimated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.registry import CARDS
from experiments.budget import bench_rows, find_bench_row, gpu_matches
from experiments.datasets import dataset_images
from mixmim.config import RunConfig

DEFAULT_GPU = "A100"
DEFAULT_MFU = 0.3  # assumed model FLOPs utilisation of the estimate (printed beside every estimated figure)
# Forward GFLOPs per image at 224 px (fvcore convention: multiply-adds), dense official attention.
# Pre-training: each method's card (``MethodCard.flops``: its source recipe on the backbone; MixMIM on the ViT with
# 32-px cells). Fine-tuning / probing: the backbone's classification forward (below). Produced by
# ``python scripts/count_flops.py`` (mixmim.bench.method_flops, mixmim.bench.flops.backbone_flops); its test
# regenerates a part and compares (tests/scripts/test_count_flops.py).
PRETRAIN_GFLOPS: dict[tuple[str, str], float] = {
    (name, backbone): entry.gflops for name, card in CARDS.items() for backbone, entry in card.flops.items()
}
BACKBONE_GFLOPS: dict[str, float] = {
    "mixmim_base": 16.35,
    "mixmim_large": 35.86,
    "mixmim_huge": 117.67,
    "mixmim_vit_base_patch16": 17.58,
}
TRAIN_PASSES = 3  # forward + backward = 3 forward passes (fvcore convention, as the benchmark counts)
NOT_ESTIMATED = {"coco": "detection: no cost model (see docs/coco.md for the paper's schedule)"}
NEGLIGIBLE = {"tokenizer": "k-means on at most 100,000 cells of a few thousand images (baselines.tokenizers.stage)"}


@dataclass
class StageCost:
    """The projection of one stage of one run; ``gpu_hours``/``wall_hours`` None when not estimated."""

    run: str
    stage: str
    gpus: int
    images: float
    gpu_hours: float | None
    wall_hours: float | None
    source: str


def default_gpu() -> str:
    """This machine's GPU name (``nvidia-smi``, no torch), else :data:`DEFAULT_GPU`."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out.splitlines()[0].strip()
    return DEFAULT_GPU


def stage_images(cfg: RunConfig, stage: str) -> tuple[float, int]:
    """Images processed by ``stage`` and forward passes per image (training 3, frozen features 1)."""
    train, val, _ = dataset_images(cfg)
    if stage == "knn":
        return float(train + val), 1
    section = getattr(cfg, stage)
    images = float(train * section.epochs)
    if getattr(section, "max_steps", 0):
        images = min(images, float(section.max_steps * section.batch_size * max(_gpus(cfg), 1)))
    return images, (1 if stage == "linprobe" else TRAIN_PASSES)


def _gpus(cfg: RunConfig) -> int:
    return cfg.launch.nodes * cfg.launch.gpus_per_node


def _precision(cfg: RunConfig, stage: str) -> str:
    precision = getattr(getattr(cfg, stage, None), "precision", "auto")
    return "bf16" if precision == "auto" else precision


_COUNTED: dict[tuple[str, str, str], tuple[float, str]] = {}  # (stage, model, method) -> counted once per process


def forward_gflops(cfg: RunConfig, stage: str) -> tuple[float, str]:
    """Forward GFLOPs per image of ``stage``'s model: the table when it holds the run's configuration, else
    counted on the model (imports torch), once per model and method configuration (the replicates of a run,
    ``--seeds``, differ only in their seed)."""
    key = (stage, repr(cfg.model), repr(cfg.method) if stage == "pretrain" else "")
    if key not in _COUNTED:
        _COUNTED[key] = _forward_gflops(cfg, stage)
    return _COUNTED[key]


def _forward_gflops(cfg: RunConfig, stage: str) -> tuple[float, str]:
    size = cfg.model.img_size or 224
    if stage == "pretrain":
        key = (cfg.method.name, cfg.model.backbone)
        if key in PRETRAIN_GFLOPS and size == 224 and _source_recipe(cfg):
            return PRETRAIN_GFLOPS[key], "FLOP table"
        from experiments.budget import forward_flops_per_image

        return forward_flops_per_image(cfg) / 1e9, "FLOPs counted"
    if cfg.model.backbone in BACKBONE_GFLOPS and size == 224:
        return BACKBONE_GFLOPS[cfg.model.backbone], "FLOP table"
    from mixmim.bench.flops import backbone_flops

    return backbone_flops(cfg.model.backbone, cfg.model.img_size or None) / 1e9, "FLOPs counted"


def _source_recipe(cfg: RunConfig) -> bool:
    """Whether the run's method options that change its FLOPs are those of the table (the source recipe)."""
    from baselines import method_defaults

    defaults = method_defaults(cfg.method.name)
    fields = ("mask_ratio", "decoder_dim", "decoder_depth", "mask_type", "mix_embedding", "dual_reconstruction")
    return all(getattr(cfg.method, f) == defaults.get(f"method.{f}", getattr(cfg.method, f)) for f in fields)


def peak_tflops(gpu: str, precision: str) -> float:
    """Dense peak TFLOP/s of ``gpu`` (a name pattern of ``PEAK_TFLOPS``, e.g. ``A100``) at ``precision``."""
    from mixmim.bench.peaks import PEAK_TFLOPS
    from mixmim.config import ConfigError

    matches = [p for p in PEAK_TFLOPS if gpu_matches(p, gpu)] or [p for p in PEAK_TFLOPS if gpu_matches(gpu, p)]
    for pattern in matches[:1]:  # a device name holds the pattern ("NVIDIA H100 PCIe"), else the name is short
        peaks = PEAK_TFLOPS[pattern]
        kind = "tf32" if precision == "fp32" and "tf32" in peaks else precision
        if kind in peaks:
            return peaks[kind]
    raise ConfigError(
        f"no peak TFLOP/s for GPU '{gpu}' at {precision}; known: {', '.join(PEAK_TFLOPS)} "
        "(mixmim.bench.peaks.PEAK_TFLOPS)"
    )


def stage_cost(cfg: RunConfig, stage: str, gpu: str, rows: list, mfu: float,
               preflight: list | None = None) -> StageCost:  # fmt: skip
    """The projection of one stage (see the module docstring); ``preflight``: the preflight rows with their files."""
    gpus = _gpus(cfg)
    if stage in NOT_ESTIMATED:
        return StageCost(cfg.name, stage, gpus, math.nan, None, None, f"not estimated: {NOT_ESTIMATED[stage]}")
    if stage in NEGLIGIBLE:
        return StageCost(cfg.name, stage, gpus, math.nan, 0.0, 0.0, f"negligible: {NEGLIGIBLE[stage]}")
    images, passes = stage_images(cfg, stage)
    assumed = " (ImageNet-1k size assumed)" if dataset_images(cfg)[2].endswith("assumed") else ""
    if gpus == 0:
        measured = _preflight_elsewhere(cfg, stage, None, preflight or [], images)
        source = "CPU run (launch.gpus_per_node=0): no GPU-hours" + measured
        return StageCost(cfg.name, stage, 0, images, 0.0, None, source)
    precision = _precision(cfg, stage)
    measured = _preflight_cost(cfg, stage, gpu, preflight or [], images, passes)
    if measured is not None:
        return measured
    found = (
        find_bench_row(
            rows, cfg.method.name, cfg.model.backbone, gpu=gpu, precision=precision, img_size=cfg.model.img_size or None
        )
        if stage == "pretrain"
        else None
    )
    # the stage's own rate: a training rate (3 passes per image) scaled to the stage's passes (the probe: 1)
    if found:
        row, path = found
        per_s = float(row["images_per_s"]) * TRAIN_PASSES / passes
        source = f"bench: {row.get('device_name')}, {per_s:.0f} img/s/GPU{_passes_note(passes)} ({Path(path).name})"
    else:
        gflops, counted = forward_gflops(cfg, stage)
        per_s = mfu * peak_tflops(gpu, precision) * 1e12 / (2 * passes * gflops * 1e9)
        source = (
            f"estimate: {gflops:.1f} GFLOPs/img ({counted}), MFU {mfu:.2f} assumed of {gpu} {precision} "
            f"peak, {per_s:.0f} img/s/GPU{_passes_note(passes)}"
        )
    gpu_hours = images / per_s / 3600
    elsewhere = _preflight_elsewhere(cfg, stage, gpu, preflight or [], images)
    return StageCost(cfg.name, stage, gpus, images, gpu_hours, gpu_hours / gpus, source + assumed + elsewhere)


def _passes_note(passes: int) -> str:
    """`` (forward only)`` for a stage of frozen features, whose images cost one pass instead of three."""
    return " (forward only)" if passes == 1 else ""


def _preflight_cost(cfg: RunConfig, stage: str, gpu: str, preflight: list, images: float,
                    passes: int) -> StageCost | None:  # fmt: skip
    """The projection from a matching preflight row (its measured step, the stage's own passes), or None."""
    from experiments.preflight.rows import find_preflight_row

    found = find_preflight_row(preflight, cfg, stage, gpu)
    if found is None or not found[0].get("images_per_s_step"):
        return None
    row, path = found
    per_s, gpus = float(row["images_per_s_step"]), _gpus(cfg)
    gpu_hours = images / per_s / 3600  # the measured step of this very stage: no pass conversion
    source = (f"preflight: {row.get('device')}, batch {row.get('batch_size')} {row.get('precision')}, "
              f"{per_s:.0f} img/s/GPU ({path}, {row.get('time')})")  # fmt: skip
    return StageCost(cfg.name, stage, gpus, images, gpu_hours, gpu_hours / gpus, source)


def _preflight_elsewhere(cfg: RunConfig, stage: str, gpu: str | None, preflight: list, images: float) -> str:
    """What the preflight measured for this stage shape when no row matches ``gpu`` at the run's configuration: per
    device its newest row, named, and the hours of the run's images at that row's measured step, in that device's
    unit (a CPU row: hours of one CPU process, never GPU-hours), beside the figure of the line (``gpu`` None: a CPU
    run, which no GPU row could match)."""
    from experiments.preflight.rows import recipe_batch, rows_per_device

    notes = []
    for row, path in rows_per_device(preflight, cfg, stage):
        device, per_s = str(row.get("device")), row.get("images_per_s_step")
        if not per_s or math.isnan(images):
            continue
        unit = "CPU-hours of 1 process, not GPU-hours" if device == "cpu" else f"GPU-hours on {device}"
        unlike = f"; not {gpu} at the run's batch {recipe_batch(cfg, stage)} {_precision(cfg, stage)}" if gpu else ""
        notes.append(f"preflight on {device} beside it: batch {row.get('batch_size')} {row.get('precision')}, "
                     f"{float(per_s):.3g} img/s ({row.get('step_basis', 'measured step')}) -> "
                     f"{_hours(images / float(per_s) / 3600)} {unit}{unlike} ({path}, {row.get('time')})")
    return "".join(f" | {note}" for note in notes)


def project_costs(
    runs: Sequence[RunConfig], output: Path, gpu: str = DEFAULT_GPU, mfu: float = DEFAULT_MFU
) -> list[StageCost]:
    """Every stage of every run, projected on ``gpu``."""
    from experiments.preflight.rows import preflight_rows

    rows, preflight = bench_rows(output), preflight_rows(output)
    return [stage_cost(cfg, stage, gpu, rows, mfu, preflight) for cfg in runs for stage in cfg.stages]


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2g}"


def _wall(hours: float | None) -> str:
    if hours is None:
        return "-"
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def cost_rows(costs: Sequence[StageCost], measured: dict[tuple[str, str], float] | None = None) -> list[dict[str, Any]]:
    """One row per run and stage, then a total per run and a grand total; ``measured``: (run, stage) ->
    measured GPU-hours of finished stages (the report's column)."""
    rows: list[dict[str, Any]] = []
    total = {"gpu": 0.0, "measured": 0.0, "wall": 0.0}
    for run in dict.fromkeys(c.run for c in costs):
        mine = [c for c in costs if c.run == run]
        for c in mine:
            row = {
                "run": c.run,
                "stage": c.stage,
                "GPUs": c.gpus,
                "images": "-" if math.isnan(c.images) else f"{c.images:,.0f}",
                "GPU-hours": _hours(c.gpu_hours),
                "wall": _wall(c.wall_hours),
            }
            if measured is not None:
                row["measured GPU-hours"] = _hours(measured.get((c.run, c.stage)))
            rows.append({**row, "source": c.source})
        known = [c for c in mine if c.gpu_hours is not None]
        run_gpu = sum(c.gpu_hours for c in known)
        run_wall = sum(c.wall_hours for c in known if c.wall_hours is not None)
        total["gpu"] += run_gpu
        total["wall"] = max(total["wall"], run_wall)
        row = {
            "run": run,
            "stage": "total",
            "GPUs": "",
            "images": "",
            "GPU-hours": _hours(run_gpu),
            "wall": _wall(run_wall) if run_wall else "-",
        }
        if measured is not None:
            run_measured = sum(v for (r, _), v in measured.items() if r == run)
            total["measured"] += run_measured
            row["measured GPU-hours"] = _hours(run_measured)
        partial = len(known) < len(mine)
        rows.append({**row, "source": "stages not estimated are left out" if partial else ""})
    row = {
        "run": "all runs",
        "stage": "total",
        "GPUs": "",
        "images": "",
        "GPU-hours": _hours(total["gpu"]),
        "wall": _wall(total["wall"]) if total["wall"] else "-",
    }
    if measured is not None:
        row["measured GPU-hours"] = _hours(total["measured"])
    rows.append({**row, "source": "runs in parallel: wall time is the longest run's"})
    return rows


def cost_table(costs: Sequence[StageCost], gpu: str, measured: dict[tuple[str, str], float] | None = None) -> str:
    """The cost table in GitHub markdown, with a line saying what it assumes."""
    from tabulate import tabulate

    head = (
        f"Projected cost on {gpu} GPUs (GPU-hours: all GPUs of a run together; wall: with perfect scaling over "
        "the run's GPUs; source per line: a measured `mixmim-bench preflight` row, a `mixmim-bench bench` row, or "
        "an estimate from FLOPs and an assumed MFU):"
    )
    return (
        head + "\n\n" + tabulate(cost_rows(costs, measured), headers="keys", tablefmt="github", disable_numparse=True)
    )
