"""Fixed budgets: ``--budget epochs=N``, ``gpu-hours=H`` or ``flops=F`` -> pre-training epochs per run.

- epochs: every run pre-trains N epochs.
- flops: ``epochs = F / (3 x forward FLOPs per image x training images)`` (fvcore convention; training
  counted as 3x forward, as the benchmark does).
- gpu-hours: ``epochs = H x 3600 x measured images/s per GPU / training images``. The throughput comes
  from a GPU preflight row of the run's pre-training (``mixmim-bench preflight``: its shape, precision and per-GPU
  batch), from the benchmark store (``<output>/bench/*.jsonl``, written by ``mixmim-bench bench``) or from earlier
  runs' ``pretrain/result.json``; with neither, the conversion fails and names the command to measure it.

The conversion is recorded in each run's ``manifest.json`` (``budget``); ``setting.budget`` names it.
"""

from __future__ import annotations

import glob
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.registry import method_card
from mixmim.config import RunConfig, validate
from mixmim.runs.bench_store import read_bench_rows, store_dir
from mixmim.runs.rundir import read_json

BUDGET_KINDS = ("epochs", "gpu-hours", "flops")


class BudgetError(ValueError):
    """A budget that cannot be parsed or converted; the message says what to do."""


@dataclass(frozen=True)
class Budget:
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        kind, _, value = text.partition("=")
        if kind not in BUDGET_KINDS or not value:
            raise BudgetError(f"budget '{text}' must be one of epochs=N, gpu-hours=H, flops=F")
        try:
            number = float(value)
        except ValueError:
            raise BudgetError(f"budget value '{value}' is not a number") from None
        if number <= 0:
            raise BudgetError(f"budget must be positive, got {number}")
        if kind == "epochs" and not number.is_integer():
            raise BudgetError(f"budget epochs={value} is not a whole number of epochs: pass epochs=N with N >= 1")
        return cls(kind, number)


def training_images(cfg: RunConfig) -> int:
    """Number of pre-training images the run's data config yields."""
    from mixmim.data import build_dataset

    return len(build_dataset(cfg.data, "train"))


def forward_flops_per_image(cfg: RunConfig) -> float:
    """fvcore-convention FLOPs of one pre-training forward per image (method incl. decoder).

    Counted on real CPU tensors at batch 2 (group masks need concrete values, so the ``meta`` device
    does not do); no gradients are kept. BEiT's k-means codebook is fitted by the run's own ``tokenizer``
    stage, so before any run exists its FLOPs are counted with a zero codebook of the same shape (the count
    depends on shapes only).
    """
    import tempfile

    import torch

    from baselines import build_method
    from mixmim.bench.flops import count_flops

    with tempfile.TemporaryDirectory() as tmp:
        method = build_method(cfg, _shape_only_codebook(cfg, Path(tmp))).eval()
    size = method.encoder.img_size
    return count_flops(method, torch.zeros(2, 3, size, size)) / 2


def _shape_only_codebook(cfg: RunConfig, run_dir: Path) -> Path | None:
    """A run folder holding a zero k-means codebook of ``method.vocab_size`` tokens for a run of a visual-token
    method (BEiT: ``MethodCard.uses_tokenizer``) that has none yet (``None`` for every other run): FLOP counting
    needs the shapes, not the fitted values."""
    if not method_card(cfg.method.name).uses_tokenizer or cfg.method.tokenizer != "kmeans" or cfg.method.tokenizer_path:
        return None
    import torch

    from baselines.tokenizers.kmeans import CELL_RESOLUTION as CELL
    from baselines.tokenizers.kmeans import KMeansTokenizer
    from baselines.tokenizers.stage import CODEBOOK_FILE, STAGE

    (run_dir / STAGE).mkdir(parents=True)
    KMeansTokenizer(torch.zeros(cfg.method.vocab_size, CELL * CELL * 3), CELL).save(run_dir / STAGE / CODEBOOK_FILE)
    return run_dir


def bench_rows(output: Path) -> list[tuple[dict[str, Any], str]]:
    """Every default-path training-step row of the benchmark store ``<output>/bench/*.jsonl`` with its file,
    newest file first (not the official-attention or bound rows: they are not what a run executes)."""
    folder = store_dir(output)
    rows = sorted(read_bench_rows(folder), key=lambda row: row["source"], reverse=True)  # stable: file order kept
    return [(row, str(folder / row["source"])) for row in rows
            if row.get("images_per_s") and row.get("default_path", True)]


def gpu_matches(gpu: str, device_name: str) -> bool:
    """Whether ``gpu`` names ``device_name`` as a whole word (``A100`` matches ``NVIDIA A100-SXM4``, ``A10`` not)."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(gpu)}(?![A-Za-z0-9])", device_name, re.IGNORECASE) is not None


def find_bench_row(rows: list[tuple[dict[str, Any], str]], method: str, backbone: str, *, device: str = "cuda",
                   gpu: str | None = None, precision: str | None = None,
                   img_size: int | None = None) -> tuple[dict[str, Any], str] | None:
    """The newest row measured for ``method`` on ``backbone`` on ``device`` (``gpu``: a substring of the
    device name, e.g. ``A100``; ``precision``, ``img_size``: when given, must match), or None."""
    for row, path in rows:
        if (row.get("method"), row.get("backbone"), row.get("device")) != (method, backbone, device):
            continue
        if gpu and not gpu_matches(gpu, str(row.get("device_name", ""))):
            continue
        if precision and row.get("precision") != precision:
            continue
        if img_size and row.get("img_size") not in (None, img_size):
            continue
        return row, path
    return None


def run_device(cfg: RunConfig) -> str:
    """``cuda`` for a run that asks for GPUs (``launch.gpus_per_node``), else ``cpu``."""
    return "cuda" if cfg.launch.gpus_per_node > 0 else "cpu"


def measured_images_per_s(cfg: RunConfig, output: Path) -> tuple[float, str]:
    """Per-device (per-process) training throughput of the run's method on its backbone, and its source.

    Only measurements on the run's own kind of device count (``run_device``): a GPU run's budget converted
    with a CPU row would be off by two orders of magnitude, so a store holding only CPU rows for a GPU run
    fails with the ``bench`` command that gives the GPU row.
    """
    method, backbone, device = cfg.method.name, cfg.model.backbone, run_device(cfg)
    bench = f"`mixmim-bench bench --methods {method} --backbone {backbone} --device {device} --output {output}`"
    where = "on the target GPU" if device == "cuda" else "on this machine"
    if device == "cuda":  # the run's own pre-training step, measured by `mixmim-bench preflight` on a GPU
        from experiments.preflight.rows import find_preflight_row, preflight_rows

        measured = find_preflight_row(preflight_rows(output), cfg, "pretrain", None)
        if measured and measured[0].get("images_per_s_step"):
            row, path = measured
            return float(row["images_per_s_step"]), f"preflight {path} ({row.get('device')}, {row.get('time')})"
    rows = bench_rows(output)
    found = find_bench_row(rows, method, backbone, device=device)
    if found:
        row, path = found
        return float(row["images_per_s"]), f"benchmark {path} ({row.get('device_name') or row.get('device')})"
    cpu = find_bench_row(rows, method, backbone, device="cpu")
    if device == "cuda" and cpu:
        raise BudgetError(f"the benchmark store {cpu[1]} holds only CPU rows for method '{method}' on backbone "
                          f"'{backbone}', and run '{cfg.name}' runs on GPUs (launch.gpus_per_node="
                          f"{cfg.launch.gpus_per_node}): a CPU row would convert the gpu-hours budget wrongly. "
                          f"Run {bench} {where} first")
    for path in sorted(glob.glob(str(output / "*" / "*" / "pretrain" / "result.json"))):
        result = read_json(path)
        config = Path(path).parent.parent / "config.yaml"
        on_gpu = bool(result.get("gpu_hours"))  # the pre-training stage records 0 GPU-hours on a CPU
        if result.get("images_per_s") and on_gpu == (device == "cuda") and config.is_file():
            text = config.read_text()
            if f"name: {method}\n" in text and f"backbone: {backbone}\n" in text:
                world = max(int(result.get("world_size") or 1), 1)
                return float(result["images_per_s"]) / world, f"earlier run {path}"
    raise BudgetError(f"no measured {device} throughput for method '{method}' on backbone '{backbone}': run {bench} "
                      f"{where} first")


def budget_epochs(cfg: RunConfig, budget: Budget, output: Path) -> tuple[int, dict[str, Any]]:
    """Pre-training epochs for ``cfg`` under ``budget`` and the record of the conversion."""
    if budget.kind == "epochs":
        return int(budget.value), {"kind": "epochs", "value": budget.value}
    images = training_images(cfg)
    if budget.kind == "flops":
        per_image = 3 * forward_flops_per_image(cfg)
        epochs = budget.value / (per_image * images)
        record = {"train_flops_per_image": per_image}
    else:
        per_s, source = measured_images_per_s(cfg, output)
        epochs = budget.value * 3600 * per_s / images
        record = {"images_per_s_per_gpu": per_s, "throughput_source": source}
    if epochs < 1:
        raise BudgetError(f"budget {budget.kind}={budget.value:g} buys {epochs:.3f} epochs of '{cfg.name}'; "
                          "raise the budget or use a smaller dataset")
    return math.floor(epochs), {"kind": budget.kind, "value": budget.value, "train_images": images,
                                "exact_epochs": epochs, **record}


def apply_budget(runs: list[RunConfig], budget: Budget | None, output: Path) -> dict[str, dict[str, Any]]:
    """Set ``pretrain.epochs`` of every pre-training run from the budget (warm-up capped at a tenth).

    Returns:
        run name -> the conversion record, for the run's manifest.
    """
    records: dict[str, dict[str, Any]] = {}
    if budget is None:
        return records
    for cfg in runs:
        if "pretrain" not in cfg.stages:
            continue
        epochs, record = budget_epochs(cfg, budget, output)
        cfg.pretrain.epochs = epochs
        cfg.pretrain.warmup_epochs = min(cfg.pretrain.warmup_epochs, max(epochs // 10, 0))
        cfg.setting = {**cfg.setting, "budget": f"{budget.kind}={budget.value:g}"}
        records[cfg.name] = {**record, "epochs": epochs}
        validate(cfg)
    return records
