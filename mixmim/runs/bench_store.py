"""The benchmark store: ``<output>/bench/<timestamp>-<device>[-k].jsonl``, the rows ``mixmim-bench bench`` writes.

One JSON object per line; ``kind`` is ``step`` for a timed training step (method, backbone, device, precision,
batch, attention, optimizer, images/s, ms/step, memory, FLOPs, ratios) and ``data`` for the data pipeline. A
new file per invocation, rewritten atomically after every row, never overwriting an earlier one.

This module is the store's one writer (:func:`new_store_path`, :func:`write_rows`), its one reader
(:func:`read_bench_rows`: the speed table in ``reports/speed.py``, the cost projection and the ``gpu-hours``
budget in ``experiments/budget.py``) and its one column map (:data:`COLUMN_TITLES`: the title of every field
a table shows, for the ``bench`` printout and the speed table). Standard library only, so ``reports/`` may
import it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mixmim.runs.rundir import atomic_write_text

log = logging.getLogger(__name__)

BENCH_DIR = "bench"  # <output>/<this>
STEP, DATA = "step", "data"  # the row kinds
COLUMN_TITLES = {  # row field (or derived column) -> its title in every table of bench rows
    "device_name": "device",
    "backbone": "backbone",
    "img_size": "px",
    "precision": "precision",
    "batch_size": "batch",
    "method": "method",
    "attention": "attention",
    "optimizer": "optimizer",
    "compiled": "compiled",
    "options": "options",  # derived: the switches that change speed or memory (reports/speed.py)
    "ms_per_step": "ms/step",
    "cpu_ms_per_step": "cpu ms/step",
    "images_per_s": "img/s",
    "peak_memory_mib": "peak MiB",
    "forward_gflops_per_image": "fwd GFLOPs/img",
    "achieved_tflops": "TFLOP/s",
    "mfu": "MFU",
    "x_official": "x official",
    "x_release": "x release",
    "cost_vs_ref": "cost vs ref",
    "first_loss": "loss",
    "x_eager": "x eager",
}


def columns(*fields: str) -> dict[str, str]:
    """``{field: title}`` for ``fields``, in that order (a table's columns)."""
    return {field: COLUMN_TITLES[field] for field in fields}


def store_dir(output: str | Path) -> Path:
    """``<output>/bench``: the folder of the store files."""
    return Path(output) / BENCH_DIR


def new_store_path(output: str | Path, device: str) -> Path:
    """A fresh ``<output>/bench/<timestamp>-<device>[-k].jsonl``, created empty (exclusive)."""
    folder = store_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = folder / f"{stamp}-{device}{'' if k == 0 else f'-{k}'}.jsonl"
        try:
            with open(path, "x", encoding="utf-8"):
                return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free file name for {stamp} in {folder}")


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the store file with every row so far (atomic: readers never see half a file)."""
    atomic_write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def read_bench_rows(folder: str | Path, kind: str = STEP) -> list[dict[str, Any]]:
    """Every row of ``kind`` in every ``*.jsonl`` file of ``folder`` (the store, :func:`store_dir`), oldest file
    first (the names start with the time), each with its file's name as ``source``.

    A line that is not a JSON object is skipped with a warning (a file being written is rewritten atomically,
    so this means a damaged file, not a half-written one). An absent folder gives no rows.
    """
    rows = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                log.warning("%s:%d is not a JSON object; skipped", path, number)
                continue
            if row.get("kind") == kind:
                rows.append({**row, "source": path.name})
    return rows
