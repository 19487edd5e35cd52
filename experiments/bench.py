"""``mixmim-bench bench``: training-step throughput, memory, FLOPs and MFU of every method on one backbone.

For each method x attention implementation x AdamW variant, :func:`mixmim.bench.benchmark_variants` times
``Trainer`` steps (``Trainer.train_batch``, the body of the loop that trains) of the method's real pre-training
task: its source recipe (then ``--set``) gives the parameter groups, the AdamW (run as the variant says), the
lr schedule of an ImageNet-1k epoch at the benchmarked batch, clipping, precision and scaler (``mixmim.bench``
says what each figure means). The rows are printed as a table and written to the results store
``<output>/bench/<timestamp>-<device>.jsonl`` (a new file per invocation, rewritten atomically after every
row, never overwriting an earlier file; its format, writer and reader: ``mixmim.runs.bench_store``), where the
report and the ``gpu-hours`` budget conversion read the measured throughput. Within a method the rows of the
default path come first.

Ratios in the table (same method, batch and precision, measured in the same invocation):

- ``x_official``: images/s over the row with the official attention formulation and the same optimizer
  (what the attention implementation alone gains);
- ``x_release``: images/s over the official attention with torch's default AdamW (``--optimizer default``),
  i.e. the step as the official code runs it, when that row was measured;
- ``cost_vs_ref``: ms/step over the reference method's (``--ref-method``, SimMIM by default) with the same
  attention and optimizer;
- ``x_eager`` (``--compile``): images/s of a compiled row over the same variant's eager row.

``--compile`` times every method twice, eager and compiled (``pretrain.compile=inductor``: the trainer compiles
the method's forward and loss, and with them the backward), each from the same initial weights and masks, so
the ``loss`` column (the first warm-up step's) of the two rows must agree.

``--bound`` adds the cost floor ``bound``: the same step with the window attention replaced by its ``qkv``
and ``proj`` projections alone (not attention; ``mixmim.backbones.attention``). Its ``x_official`` is the
most that any attention implementation could gain over the official formulation at that batch and precision.

On the CPU, glibc keeps freed memory for every row (``--no-keep-heap`` to turn it off), as the CPU training
stages do (``experiments.stages.prepare_process``).

The variants of a method are timed with their steps interleaved (``benchmark_variants``); ``--repeats R``
runs R such rounds and keeps each variant's median round. ``--data PATH`` also measures the pre-training
data pipeline (decode + augmentation of ``<PATH>/train``), to show whether loading or compute bounds a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from mixmim.config import ConfigError
from mixmim.runs.bench_store import STEP, columns, new_store_path, write_rows

if TYPE_CHECKING:  # torch loads when the command runs: the CLI builds this parser for --help too
    import torch

    from mixmim.bench import StepStats

log = logging.getLogger(__name__)

# The engine (and the models) are imported when the command runs, so that building the CLI parser stays cheap.
ATTENTION_CHOICES = ("grouped", "sdpa", "official")  # mixmim.backbones.attention.ATTENTION_IMPLS
OPTIMIZER_CHOICES = ("fused", "foreach", "single", "default")  # mixmim.bench.OPTIMIZERS
DEFAULT_BACKBONE = "mixmim_base"
REFERENCE_IMPL = "official"
BOUND_IMPL = "bound"  # mixmim.backbones.attention.BOUND_IMPL: the cost floor, not attention
TABLE_COLUMNS = columns(  # the printed table (titles: the store's one column map)
    "method", "attention", "optimizer", "compiled", "batch_size", "ms_per_step", "cpu_ms_per_step", "images_per_s",
    "peak_memory_mib", "forward_gflops_per_image", "achieved_tflops", "mfu", "x_official", "x_release",
    "cost_vs_ref", "first_loss", "x_eager",
)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` sub-command's options."""
    parser.add_argument(
        "--methods",
        type=_csv,
        default=None,
        help="comma-separated methods (default: every registered method, else mixmim)",
    )
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"backbone name (default {DEFAULT_BACKBONE})")
    parser.add_argument("--img-size", type=int, default=0, help="px (default: the backbone's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every method after its source recipe, e.g. method.mask_unit=8",
    )
    parser.add_argument("--batch-size", type=int, default=0, help="per device (default: 128 on cuda, 8 on cpu)")
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto", help="auto: bf16 on cuda, fp32 on cpu"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--steps", type=int, default=10, help="timed steps, the median is reported (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of all variants (steps interleaved within a round); the median round is kept (default 1)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time each method compiled (pretrain.compile=inductor), beside its eager rows, from the same "
        "weights and masks (equal losses)",
    )
    parser.add_argument(
        "--grad-checkpointing", action="store_true", help="activation checkpointing in the encoder (memory for L/H)"
    )
    parser.add_argument(
        "--attention",
        type=_csv,
        default=None,
        help=f"attention implementations, comma-separated, of {ATTENTION_CHOICES} "
        f"(default: the package default, then {REFERENCE_IMPL})",
    )
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also time the cost floor 'bound' (the window attention replaced by its qkv and proj "
        "projections alone): its 'x official' is the most any attention implementation "
        "could gain",
    )
    parser.add_argument(
        "--optimizer",
        type=_csv,
        default=["fused"],
        help=f"AdamW variants, comma-separated, of {OPTIMIZER_CHOICES} (default: fused; "
        "'default' is torch's own choice, as the official code gets)",
    )
    parser.add_argument("--ref-method", default="simmim", help="cost_vs_ref divides by this method's ms/step")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's dense peak for MFU (default: a table of NVIDIA GPUs)",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    parser.add_argument(
        "--keep-heap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="CPU: glibc keeps freed memory (no page faults on every large tensor), as CPU training "
        "stages do; for all rows (default: on)",
    )
    parser.add_argument("--data", default=None, help="ImageFolder root: also time decode + augmentation")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data loader workers")
    parser.add_argument("--data-batches", type=int, default=20, help="timed batches of the data benchmark")
    parser.add_argument("--data-batch-size", type=int, default=64, help="images per batch of the data benchmark")
    parser.add_argument("--output", default="outputs", help="outputs root; rows go to <output>/bench/")


def default_methods() -> list[str]:
    """Every registered method when the baselines package provides ``build_method``, else MixMIM only."""
    try:
        import baselines
    except ImportError:
        return ["mixmim"]
    return list(baselines.METHODS) if hasattr(baselines, "build_method") else ["mixmim"]


def _resolve(args: argparse.Namespace) -> tuple[torch.device, str, int]:
    """Device, precision and batch size with the defaults filled in."""
    import torch

    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is available")
    precision = args.precision if args.precision != "auto" else ("bf16" if name == "cuda" else "fp32")
    return torch.device(name), precision, args.batch_size or (128 if name == "cuda" else 8)


def _validate(args: argparse.Namespace, methods: list[str], attention: list[str]) -> None:
    from mixmim.backbones.attention import ATTENTION_IMPLS
    from mixmim.bench import OPTIMIZERS

    if BOUND_IMPL in attention:
        raise ConfigError(f"'{BOUND_IMPL}' is the cost floor, not an attention implementation: add it with --bound")
    bad = [a for a in attention if a not in ATTENTION_IMPLS] + [o for o in args.optimizer if o not in OPTIMIZERS]
    if bad:
        raise ConfigError(
            f"unknown --attention/--optimizer value(s) {bad}: attention one of {ATTENTION_IMPLS}, "
            f"optimizer one of {OPTIMIZERS}"
        )
    if not methods:
        raise ConfigError("--methods is empty")


def _release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so each method starts clean."""
    from mixmim.engine.host_memory import trim_heap

    gc.collect()
    trim_heap()


def _median_round(rounds: list[StepStats]) -> tuple[StepStats, list[float]]:
    """The round with the median throughput, and every round's ms/step."""
    ordered = sorted(rounds, key=lambda s: s.ms_per_step)
    return ordered[(len(ordered) - 1) // 2], [s.ms_per_step for s in rounds]


def run_bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Benchmark every method x attention x optimizer; print the table, store and return the rows."""
    import torch

    from baselines.reference import method_builder
    from experiments.datasets import TRAIN_IMAGES
    from mixmim.backbones.attention import get_attention_impl
    from mixmim.bench import StepOptions, benchmark_variants, method_flops
    from mixmim.engine.host_memory import keep_freed_memory

    device, precision, batch = _resolve(args)
    methods = args.methods or default_methods()
    attention = args.attention or list(dict.fromkeys([get_attention_impl(), REFERENCE_IMPL]))
    _validate(args, methods, attention)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_heap = bool(args.keep_heap and device.type == "cpu" and keep_freed_memory())
    variants = [(a, o) for a in attention for o in args.optimizer]
    if args.bound:
        variants.append((BOUND_IMPL, args.optimizer[0]))
    rows: list[dict[str, Any]] = []
    with method_builder(args.backbone, args.img_size, args.overrides) as build:
        _check_methods_build(build, methods, args)  # before any timing: no store holds part of a comparison
        store = new_store_path(args.output, device.type)
        for name in methods:
            method, cfg = build(name)
            method = method.to(device)
            if args.grad_checkpointing and hasattr(method.encoder, "set_grad_checkpointing"):
                method.encoder.set_grad_checkpointing(True)
            img_size = method.encoder.img_size
            flops = method_flops(method, img_size, device)
            modes = (False, True) if args.compile else (False,)
            initial = {k: v.clone() for k, v in method.state_dict().items()}  # each mode starts from these
            rounds: dict[tuple[bool, str, str], list[StepStats]] = {(c, *v): [] for v in variants for c in modes}
            options = StepOptions(batch_size=batch, img_size=img_size, precision=precision, device=device,
                                  steps=args.steps, warmup=args.warmup, peak_tflops=args.peak_tflops,
                                  forward_flops=flops, cfg=cfg, epoch_images=TRAIN_IMAGES["imagenet"])  # fmt: skip
            for _ in range(max(args.repeats, 1)):
                for compiled in modes:
                    method.load_state_dict(initial)
                    _release_memory()
                    measured = benchmark_variants(method, variants, dataclasses.replace(options, compile=compiled))
                    for variant, stats in zip(variants, measured):
                        rounds[(compiled, *variant)].append(stats)
            for stats in rounds.values():
                best, all_ms = _median_round(stats)
                rows.append({**_row(name, args, best, all_ms), "keep_heap": keep_heap})
            del method
            _release_memory()
            rows = add_ratios(rows, args.ref_method)
            write_rows(store, rows)
    if args.data:
        rows += _data_rows(args, device)
        write_rows(store, rows)
    print_tables(rows)
    print(f"\nrows written to {store}")
    return rows


def _check_methods_build(build: Callable[[str], Any], methods: list[str], args: argparse.Namespace) -> None:
    """Build every method once (on the CPU, then dropped); a method its recipe and ``--set`` cannot build on
    ``--backbone`` (SimMIM's 32 px mask unit at 32 px) is refused with the fix before anything is timed."""
    for name in methods:
        try:
            build(name)
        except (ValueError, KeyError) as err:
            raise ConfigError(
                f"bench: method '{name}' cannot be built on backbone '{args.backbone}': {err}. --set applies to "
                "every method benchmarked; fix it there or bench that method in its own command"
            ) from None
    _release_memory()


def _row(method: str, args: argparse.Namespace, stats: StepStats, all_ms: list[float]) -> dict[str, Any]:
    """One store row: what was measured and how."""
    import torch

    from mixmim.backbones.attention import get_attention_impl

    overrides = sorted(args.overrides or [])  # the row's config: the method's recipe, then these
    default = stats.attention == get_attention_impl() and stats.optimizer == "adamw-fused" and not stats.compiled
    return {
        "kind": STEP,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "method": method,
        "backbone": args.backbone,
        "default_path": default,
        "grad_checkpointing": bool(args.grad_checkpointing),
        "overrides": overrides,
        **stats.as_row(),
        "repeats_ms_per_step": all_ms,
        "torch": torch.__version__,
    }


def add_ratios(rows: list[dict[str, Any]], ref_method: str) -> list[dict[str, Any]]:
    """Fill ``x_official``, ``x_release``, ``cost_vs_ref`` and ``x_eager`` (see the module docstring), each between
    rows of the same compile mode but ``x_eager``; default path first."""
    steps = [r for r in rows if r.get("kind") == STEP]

    def find(method: str, attention: str, optimizer: str, compiled: bool) -> dict[str, Any] | None:
        key = (method, attention, optimizer, compiled)
        return next((r for r in steps if (r["method"], r["attention"], r["optimizer"], r.get("compiled")) == key), None)

    for r in steps:
        compiled = r.get("compiled")
        same = find(r["method"], REFERENCE_IMPL, r["optimizer"], compiled)
        release = find(r["method"], REFERENCE_IMPL, "adamw-default", compiled)
        ref = find(ref_method, r["attention"], r["optimizer"], compiled)
        eager = find(r["method"], r["attention"], r["optimizer"], False) if compiled else None
        r["x_official"] = r["images_per_s"] / same["images_per_s"] if same else None
        r["x_release"] = r["images_per_s"] / release["images_per_s"] if release else None
        r["cost_vs_ref"] = r["ms_per_step"] / ref["ms_per_step"] if ref else None
        r["x_eager"] = r["images_per_s"] / eager["images_per_s"] if eager else None
        r["ref_method"] = ref_method if ref else None
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in steps))}
    steps.sort(key=lambda r: (order[r["method"]], not r["default_path"]))
    return steps + [r for r in rows if r.get("kind") != STEP]


def _data_rows(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Decode + pre-training augmentation throughput of ``<args.data>/train`` on both decode paths: ``cpu`` (in
    the workers) and ``gpu`` (JPEG bytes decoded on ``device``; without CUDA its row says so, unmeasured)."""
    from mixmim.bench import benchmark_data, benchmark_gpu_decode
    from mixmim.data import ImageFolderDataset, pretrain_transform
    from mixmim.data.gpu_decode import NotJpegError

    img_size = args.img_size or 224
    dataset = ImageFolderDataset(args.data, "train", transform=None)
    row = {"kind": "data", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "data": str(args.data), "img_size": img_size,
           "transform": "pretrain"}  # fmt: skip
    sizes = {"workers": args.workers, "batches": args.data_batches, "batch_size": args.data_batch_size}
    cpu = benchmark_data(dataset, pretrain_transform(img_size), **sizes)
    rows = [{**row, **vars(cpu), "device": "cpu", "note": ""}]
    gpu = {**row, **sizes, "decode": "gpu", "device": device.type, "images_per_s": None,
           "images_per_s_per_worker": None, "note": ""}  # fmt: skip
    if device.type != "cuda":
        return [*rows, {**gpu, "note": "needs CUDA (bench --device cuda)"}]
    try:
        measured = benchmark_gpu_decode(dataset.samples, img_size, device=device, **sizes)
    except NotJpegError as err:
        return [*rows, {**gpu, "note": str(err)}]
    return [*rows, {**gpu, **vars(measured)}]


def print_tables(rows: list[dict[str, Any]]) -> None:
    """The step table (and the data table when measured), in GitHub markdown."""
    steps = [r for r in rows if r.get("kind") == STEP]
    if steps:
        first = steps[0]
        print(
            f"\n{first['backbone']} @ {first['img_size']} px, {first['precision']}, {first['device_name']} "
            f"({first['threads']} threads), median of {first['steps']} interleaved Trainer steps after "
            f"{first['warmup']} warm-up; x official/release: img/s over the official attention (same AdamW / "
            f"torch's default AdamW); cost vs ref: ms/step over {first.get('ref_method') or 'the reference method'}'s"
            + ("; bound: no attention, the cost floor" if any(r["attention"] == BOUND_IMPL for r in steps) else "")
            + ("; glibc keeps freed memory" if first.get("keep_heap") else "")
        )
        table = [{h: _fmt(r.get(k)) for k, h in TABLE_COLUMNS.items()} for r in steps]
        print(tabulate(table, headers="keys", tablefmt="github", disable_numparse=True))
    data = [r for r in rows if r.get("kind") == "data"]
    if data:
        print()
        cols = ["data", "decode", "device", "workers", "batch_size", "images_per_s", "images_per_s_per_worker", "note"]
        print(
            tabulate(
                [{c: _fmt(r[c]) for c in cols} for r in data], headers="keys", tablefmt="github", disable_numparse=True
            )
        )


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
