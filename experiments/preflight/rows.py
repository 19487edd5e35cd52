"""The preflight's rows on disk (``<output>/<experiment>/_preflight/rows.jsonl``) and the lookup that the cost
projection and ``--budget gpu-hours=`` use. Torch-free.

A row *matches* a run's stage when it passed and was measured for the same stage shape (stage, method, backbone,
resolution) on the GPU named (``--gpu``: a whole word of the row's device name) at the run's precision and its
per-GPU batch: the configuration the run will execute, on the device it will execute on.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from mixmim.config import RunConfig
from mixmim.runs.rundir import read_jsonl

FOLDER = "_preflight"
ROWS = "rows.jsonl"


def preflight_dir(experiment_dir: Path) -> Path:
    """``<output>/<experiment>/_preflight``: everything a preflight writes (never a run folder)."""
    return Path(experiment_dir) / FOLDER


def preflight_rows(output: Path) -> list[tuple[dict[str, Any], str]]:
    """Every passed row of every experiment's preflight under ``output``, newest first, with its file."""
    rows = []
    for path in glob.glob(str(Path(output) / "*" / FOLDER / ROWS)):
        rows += [(row, path) for row in read_jsonl(path) if row.get("status") == "passed"]
    return sorted(rows, key=lambda item: str(item[0].get("time", "")), reverse=True)


def recipe_batch(cfg: RunConfig, stage: str) -> int | None:
    """The per-GPU batch of ``stage`` in the run's recipe (``coco``: its global batch over the run's GPUs)."""
    if stage == "coco":
        gpus = max(1, cfg.launch.nodes * cfg.launch.gpus_per_node)
        return max(1, cfg.coco.batch_size // gpus)
    section = getattr(cfg, stage, None)
    return getattr(section, "batch_size", None)


def run_precision(cfg: RunConfig, stage: str) -> str:
    """The precision ``stage`` runs at on a GPU (``auto``: bf16; kNN: fp32)."""
    if stage == "knn":
        return "fp32"
    precision = getattr(getattr(cfg, stage, None), "precision", "auto")
    return "bf16" if precision == "auto" else precision


def row_matches(row: dict[str, Any], cfg: RunConfig, stage: str, gpu: str | None) -> bool:
    """Whether ``row`` measured ``stage`` of run ``cfg`` on ``gpu`` as the run will execute it (see the module;
    ``gpu`` None: any CUDA device)."""
    from experiments.budget import gpu_matches

    shape = (stage, cfg.method.name, cfg.model.backbone, cfg.model.img_size,
             cfg.coco.img_size if stage == "coco" else 0)  # fmt: skip
    row_shape = tuple(row.get(k) for k in ("stage", "method", "backbone", "img_size", "coco_img_size"))
    return (
        row_shape == shape
        and (row.get("device", "cpu") != "cpu" if gpu is None else gpu_matches(gpu, str(row.get("device", ""))))
        and row.get("precision") == run_precision(cfg, stage)
        and row.get("batch_size") == recipe_batch(cfg, stage)
    )


def find_preflight_row(rows: list[tuple[dict[str, Any], str]], cfg: RunConfig, stage: str,
                       gpu: str | None) -> tuple[dict[str, Any], str] | None:  # fmt: skip
    """The newest matching row (:func:`row_matches`) and its file, or None."""
    return next(((row, path) for row, path in rows if row_matches(row, cfg, stage, gpu)), None)


def rows_per_device(rows: list[tuple[dict[str, Any], str]], cfg: RunConfig,
                    stage: str) -> list[tuple[dict[str, Any], str]]:  # fmt: skip
    """The newest passed row (and its file) of ``stage``'s shape on each device, at any batch and precision, the run's
    own experiment's rows first (another experiment's preflight may have measured the same shape): what a projection
    shows beside its figure when none matches (:func:`row_matches`), e.g. a CPU preflight's."""
    shape = (stage, cfg.method.name, cfg.model.backbone, cfg.model.img_size,
             cfg.coco.img_size if stage == "coco" else 0)  # fmt: skip
    newest: dict[str, tuple[dict[str, Any], str]] = {}
    own = sorted(rows, key=lambda item: item[0].get("experiment") != cfg.experiment)  # stable: newest first within
    for row, path in own:
        if tuple(row.get(k) for k in ("stage", "method", "backbone", "img_size", "coco_img_size")) == shape:
            newest.setdefault(str(row.get("device")), (row, path))
    return [newest[device] for device in sorted(newest)]
