"""The ``differences`` table kind: each row's paired difference to its baseline row over seeds.

For every row that is not a baseline row (``TableSpec.baseline``) and every column: the mean over the seeds
both rows have of ``row[seed] - baseline[seed]``, with its 95% Student-t interval
(:func:`reports.stats.paired_difference`), and, where both rows have a transcribed reference, the paper's
difference beside it (the ``paper`` and ``Δ`` columns of a values table, filled with differences).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.aggregate import (
    _Context,
    _metric_columns,
    _note_unreadable,
    _row_order,
    _run_index,
    _select,
    interval_cell,
    seed_values,
    table_verdicts,
)
from reports.cells import Cell, TableColumn, TableData, TableRow
from reports.references import Reference, References
from reports.spec import Column, TableSpec
from reports.stats import LEVEL, paired_difference


def _legend(spec: TableSpec) -> str:
    base = ", ".join(f"{k.removeprefix('setting.')}={v}" for k, v in spec.baseline.items())
    return (f"Cells: the difference to the baseline row ({base}, same other keys), the mean over the seeds both rows "
            f"have of the per-seed difference, ± half-width of its {LEVEL:.0%} confidence interval (Student t "
            "over the paired seeds, n-1 degrees of freedom); n: seeds paired (of the seeds either row has); "
            "n=1: no interval. paper: the paper's difference between the same rows.")


def _paper_difference(cell: Cell, column: Column, arm: tuple[Mapping[str, Any], str],
                      base: tuple[Mapping[str, Any], str], ctx: _Context) -> None:
    """The paper's ``arm - base`` difference as the cell's reference, or a note saying what is missing."""
    cell.has_reference_column = True
    keys = [column.reference_key(key, label) for key, label in (arm, base)]
    refs = [ctx.refs.get(k) for k in keys]
    missing = [k or f"(none declared for row '{label}')" for k, r, (_, label) in zip(keys, refs, (arm, base))
               if r is None or r.value is None]
    if missing:
        cell.notes.append(ctx.notes.add(f"paper difference missing: reference {', '.join(missing)} absent or not "
                                        "transcribed yet"))
        return
    a, b = refs
    source = a.source if a.source == b.source else f"{a.source}; {b.source}"
    cell.reference_key = f"{a.key} - {b.key}"
    cell.reference = Reference(key=cell.reference_key, value=a.value - b.value, source=source, unit=a.unit)
    ctx.source(f"{cell.reference_key} = {a.value:g} - {b.value:g} {a.unit}".rstrip() + f": {source}")


def _difference_cell(arm: pd.DataFrame | None, base: pd.DataFrame | None, column: Column, labels: tuple[str, str],
                     keys: tuple[Mapping[str, Any], Mapping[str, Any]], ctx: _Context) -> Cell:
    arm_values = seed_values(arm) if arm is not None else {}
    base_values = seed_values(base) if base is not None else {}
    paired = paired_difference(arm_values, base_values)
    seeds = {int(s) for frame in (arm, base) if frame is not None for s in frame["seed"].dropna()}
    if ctx.spec.seeds is not None:
        seeds |= set(ctx.spec.seeds)
    cell = interval_cell(paired.interval, len(seeds), column.digits)
    cell.signed = True
    if base is None or not base_values:
        cell.notes.append(ctx.notes.add(f"baseline row '{labels[1]}' has no results"))
    elif paired.unpaired:
        cell.notes.append(ctx.notes.add(
            f"seed(s) {', '.join(map(str, paired.unpaired))} have a result in only one of '{labels[0]}' and "
            f"'{labels[1]}': not paired"))
    if column.reference is not None:
        _paper_difference(cell, column, (keys[0], labels[0]), (keys[1], labels[1]), ctx)
    return cell


def build_differences(df: pd.DataFrame, spec: TableSpec, refs: References) -> TableData:
    """Aggregate a ``differences`` table spec (see the module docstring)."""
    sub = _select(df, spec)
    ctx = _Context(sub, spec, refs)
    runs = _run_index(sub, spec)
    columns, per_run = _metric_columns(spec, sub, runs)
    base_text = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in spec.baseline.values())
    shown = [TableColumn(title=f"{c.title}: Δ vs {base_text}", column=c.column, engine=c.engine) for c in columns]
    rows = []
    for label, key in _row_order(runs, spec):
        if spec.is_baseline(key):
            continue
        base_key = spec.baseline_key(key)
        base_label = spec.row_label(base_key)
        cells = [_difference_cell(values.get(label), values.get(base_label), col.column, (label, base_label),
                                  (key, base_key), ctx) for col, values in zip(columns, per_run)]
        rows.append(TableRow(label=label, parts=spec.row_parts(key), key=dict(key), cells=cells))
    _note_unreadable(df, ctx)
    return TableData(spec=spec, columns=shown, rows=rows, notes=ctx.notes.texts, sources=ctx.sources,
                     legend=_legend(spec), verdicts=table_verdicts(spec, columns, per_run))
