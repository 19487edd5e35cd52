"""The speed table: training-step throughput from the benchmark store, in every report format.

``mixmim-bench bench`` appends its measurements to ``<output>/bench/<timestamp>-<device>.jsonl`` (one JSON
object per line; ``kind`` ``step`` for a training step, ``data`` for the data pipeline). This module takes the
training-step rows (read by :func:`mixmim.runs.bench_store.read_bench_rows`, the store's one reader), keeps
the newest measurement of each configuration (device, backbone, resolution, precision, batch, method,
attention, optimizer, compile, activation checkpointing, heap, ``--set`` overrides) and renders one table:
what ``mixmim-bench speed`` prints and what a review bundle holds as ``speed.*`` beside the experiment's tables.

The ratio columns come from the row's own benchmark invocation (measured side by side, steps interleaved),
never from rows of different invocations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from mixmim.runs.bench_store import columns

SPEED_FORMATS = ("markdown", "latex", "csv", "html")
SPEED_EXTENSIONS = {"markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}
CONFIG_KEY = ["device_name", "backbone", "img_size", "precision", "batch_size", "method", "attention", "optimizer",
              "compiled", "grad_checkpointing", "keep_heap", "overrides"]
COLUMNS = columns(  # field -> title (the store's one column map), in table order
    "device_name", "backbone", "img_size", "precision", "batch_size", "method", "attention", "optimizer", "options",
    "images_per_s", "ms_per_step", "peak_memory_mib", "forward_gflops_per_image", "achieved_tflops", "mfu",
    "x_official", "x_release", "cost_vs_ref",
)
_DIGITS = {"images_per_s": 3, "ms_per_step": 1, "peak_memory_mib": 0, "forward_gflops_per_image": 2,
           "achieved_tflops": 3, "mfu": 3, "x_official": 3, "x_release": 3, "cost_vs_ref": 3}


def speed_table(rows: Sequence[dict[str, Any]], methods: Iterable[str] | None = None,
                backbones: Iterable[str] | None = None) -> pd.DataFrame:
    """The newest measurement of each configuration (:data:`CONFIG_KEY`) among the store's training-step
    ``rows`` (:func:`mixmim.runs.bench_store.read_bench_rows`), optionally only some methods and backbones;
    default path first within a (device, backbone, precision, batch, method) group."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        return table
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
