"""The speed table: training-step throughput from the benchmark store, in every report format.

``mixmim-bench bench`` appends its measurements to ``<output>/bench/<timestamp>-<device>.jsonl`` (one JSON
object per line; ``kind`` ``step`` for a training step, ``data`` for the data pipeline). This module reads
those rows, keeps the newest measurement of each configuration (device, backbone, resolution, precision,
batch, method, attention, optimizer, compile, activation checkpointing, heap, ``--set`` overrides) and renders
one table: what ``mixmim-bench speed`` prints and what a review bundle holds as ``speed.*`` beside the
experiment's tables.

The ratio columns come from the row's own benchmark invocation (measured side by side, steps interleaved),
never from rows of different invocations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from tabulate import tabulate

log = logging.getLogger(__name__)

SPEED_FORMATS = ("markdown", "latex", "csv", "html")
SPEED_EXTENSIONS = {"markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}
CONFIG_KEY = ["device_name", "backbone", "img_size", "precision", "batch_size", "method", "attention", "optimizer",
              "compiled", "grad_checkpointing", "keep_heap", "overrides"]
COLUMNS = {  # row field -> column title, in table order
    "device_name": "device", "backbone": "backbone", "img_size": "px", "precision": "precision",
    "batch_size": "batch", "method": "method", "attention": "attention", "optimizer": "optimizer",
    "options": "options", "images_per_s": "img/s", "ms_per_step": "ms/step", "peak_memory_mib": "peak MiB",
    "forward_gflops_per_image": "fwd GFLOPs/img", "achieved_tflops": "TFLOP/s", "mfu": "MFU",
    "x_official": "x official", "x_release": "x release", "cost_vs_ref": "cost vs ref",
}
_DIGITS = {"images_per_s": 3, "ms_per_step": 1, "peak_memory_mib": 0, "forward_gflops_per_image": 2,
           "achieved_tflops": 3, "mfu": 3, "x_official": 3, "x_release": 3, "cost_vs_ref": 3}


def read_speed_rows(bench_dir: str | Path) -> pd.DataFrame:
    """Every training-step row of every ``*.jsonl`` file in ``bench_dir``, with its file as ``source``.

    A line that is not a JSON object is skipped with a warning (a store being written is rewritten
    atomically, so this means a damaged file, not a half-written one). An absent folder gives no rows.
    """
    rows = []
    for path in sorted(Path(bench_dir).glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d is not JSON; skipped", path, number)
                continue
            if isinstance(row, dict) and row.get("kind") == "step":
                rows.append({**row, "source": path.name})
    return pd.DataFrame(rows)


def speed_table(rows: pd.DataFrame, methods: Iterable[str] | None = None,
                backbones: Iterable[str] | None = None) -> pd.DataFrame:
    """The newest measurement of each configuration (:data:`CONFIG_KEY`), optionally only some methods and
    backbones; default path first within a (device, backbone, precision, batch, method) group."""
    if rows.empty:
        return rows
    table = rows.copy()
    for column in [*CONFIG_KEY, "time", "default_path"]:
        if column not in table:
            table[column] = None
    if methods is not None:
        table = table[table["method"].isin(list(methods))]
    if backbones is not None:
        table = table[table["backbone"].isin(list(backbones))]
    table = table.sort_values("time", kind="stable", key=lambda c: c.astype(str))
    table = table[~table[CONFIG_KEY].astype(str).duplicated(keep="last")]  # the newest of each configuration
    group = ["device_name", "backbone", "img_size", "precision", "batch_size", "method"]
    table = table.assign(_first=~table["default_path"].fillna(False).astype(bool))
    table = table.sort_values([*group, "_first"], kind="stable", key=lambda c: c.astype(str))
    return table.drop(columns=["_first"]).reset_index(drop=True)


OPTION_FLAGS = {"compiled": "compile", "grad_checkpointing": "act-ckpt", "keep_heap": "heap kept"}


def _options(row: dict) -> str:
    """The row's switches that change speed or memory and its ``--set`` overrides, e.g. ``compile, act-ckpt``."""
    switches = [name for flag, name in OPTION_FLAGS.items() if row.get(flag) is True]
    overrides = row.get("overrides")
    return ", ".join([*switches, *(overrides if isinstance(overrides, list) else [])])


def _cell(field: str, value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if field in _DIGITS and isinstance(value, int | float):
        return f"{value:.{_DIGITS[field]}f}"
    return str(value)


def format_speed(table: pd.DataFrame, fmt: str = "markdown") -> str:
    """The speed table in ``fmt`` (:data:`SPEED_FORMATS`); CSV keeps every field of the rows, unrounded."""
    if fmt not in SPEED_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {SPEED_FORMATS}")
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    if table.empty:
        return "No benchmark rows (run `mixmim-bench bench` first)."
    records = [{**row, "options": _options(row)} for row in table.to_dict("records")]
    cells = [[_cell(f, row.get(f)) for f in COLUMNS] for row in records]
    tablefmt = {"markdown": "github", "latex": "latex_booktabs", "html": "html"}[fmt]
    return tabulate(cells, headers=list(COLUMNS.values()), tablefmt=tablefmt, disable_numparse=True)


def write_speed_files(table: pd.DataFrame, folder: Path) -> list[Path]:
    """``speed.<ext>`` in every format into ``folder``; nothing when the table is empty."""
    if table.empty:
        return []
    paths = []
    for fmt in SPEED_FORMATS:
        path = folder / f"speed.{SPEED_EXTENSIONS[fmt]}"
        path.write_text(format_speed(table, fmt) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
