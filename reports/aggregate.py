"""Fill a :class:`~reports.spec.TableSpec` from the results DataFrame: one :class:`~reports.cells.TableData`.

Rules that keep the report honest:
- only rows with status ``done`` and a finite value are averaged; every other run of a row is named in a
  note with its reason, and ``n`` shows how many of the expected runs count (``2/3``);
- declared seeds without a run directory are reported on the row;
- a row that averages runs differing in method, backbone or setting says so;
- numbers from different detection engines never share a column;
- a reference that is unknown or still to transcribe shows as missing, never as zero;
- a run whose recipe differs from the reference's recipe gets a protocol-drift note, and a run whose data differs
  from the reference's dataset (classes, training images, fingerprint) a dataset-drift note; both mark the cell †.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from reports.cells import Cell, NoteBook, TableColumn, TableData, TableRow
from reports.drift import DATA_FIELDS, RunDrift, run_dataset_drift, run_drift, summarize_dataset_drift, summarize_drift
from reports.references import RECIPE_FIELDS, DatasetRef, Recipe, References
from reports.results import NOT_PLANNED_REASON
from reports.spec import Column, TableSpec
from reports.stats import LEVEL, Interval, mean_interval
from reports.verdicts import Verdict, decide

MAX_NAMED_RUNS = 3


_USED_COLUMNS = (
    "run",
    "seed",
    "method",
    "backbone",
    "setting",
    "stage",
    "metric",
    "value",
    "status",
    "reason",
    "engine",
    "gflops",
    "gpu_hours",
    "images_per_s",
    "epochs_planned",
    "truncated",
    "init",  # run:<base>: the pre-training a run inherits (inherited_pretrain)
    *RECIPE_FIELDS,
    *DATA_FIELDS,
)


def _select(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Rows with a run identity that pass the spec's filters: only the columns tables use, row keys included."""
    keep = df["method"].notna() | df["stage"].notna()
    for key, wanted in spec.filters.items():
        allowed = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        if key not in df.columns:  # None: "not set" (runs without that setting key)
            keep &= None in allowed
            continue
        match = df[key].isin([a for a in allowed if a is not None])
        keep &= (match | df[key].isna()) if None in allowed else match
    if spec.seeds is not None:
        keep &= df["seed"].isin(list(spec.seeds))
    columns = list(dict.fromkeys([*_USED_COLUMNS, *spec.rows]))
    sub = df.loc[keep, [c for c in columns if c in df.columns]].copy()
    for key in spec.rows:
        if key not in sub.columns:
            sub[key] = None
    return sub


def _sort_key(values: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """Numbers before text, numbers by value, missing last."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            out.append((2, ""))
        elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
            out.append((0, float(v)))
        else:
            out.append((1, str(v)))
    return tuple(out)


def _run_index(sub: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """One row per run: run, seed, method, backbone, setting, the row-key columns and the row label."""
    cols = list(dict.fromkeys(["run", "seed", "method", "backbone", "setting", *spec.rows]))
    runs = sub.drop_duplicates("run")[cols].reset_index(drop=True)
    keys = runs[list(spec.rows)].drop_duplicates()
    labels = {tuple(r): spec.row_label(dict(zip(spec.rows, r))) for r in keys.itertuples(index=False)}
    runs["label"] = [labels[tuple(r)] for r in runs[list(spec.rows)].itertuples(index=False)]
    return runs


def _row_order(runs: pd.DataFrame, spec: TableSpec) -> list[tuple[str, dict[str, Any]]]:
    """(label, key values) of every row: ``spec.row_order`` first (even without runs), then the rest sorted.

    A declared row without runs gets its key values back from its label (``labels`` inverted), so that
    its reference can still be looked up and shown.
    """
    keyed = runs.drop_duplicates("label")
    found = {label: dict(zip(spec.rows, vals)) for label, *vals in keyed[["label", *spec.rows]].itertuples(index=False)}
    inverse = {v: k for k, v in spec.labels.items()}
    ordered: list[tuple[str, dict[str, Any]]] = []
    for label in spec.row_order or ():
        parts = label.split(" / ")
        key = found.get(label) or {k: inverse.get(p, p) for k, p in zip(spec.rows, parts)}
        ordered.append((label, key))
    rest = [(label, key) for label, key in found.items() if label not in set(spec.row_order or ())]
    rest.sort(key=lambda item: _sort_key(tuple(item[1].values())))
    return ordered + rest


def _engines(stage_rows: pd.DataFrame) -> list[str | None]:
    """Detection engines seen for a stage; ``[None]`` when there is at most one (no split needed)."""
    engines = sorted({str(e) for e in stage_rows["engine"].dropna().unique()})
    return engines if len(engines) > 1 else [engines[0] if engines else None]


def _per_run(runs: pd.DataFrame, sub: pd.DataFrame, column: Column) -> pd.DataFrame:
    """Per run: the column's value (NaN unless done and finite), engine and why it is not counted."""
    stage_rows = sub[sub["stage"] == column.stage]
    done = stage_rows[
        (stage_rows["metric"] == column.metric) & (stage_rows["status"] == "done") & stage_rows["value"].notna()
    ].drop_duplicates("run")
    engine = stage_rows.dropna(subset=["engine"]).drop_duplicates("run")[["run", "engine"]]
    not_done = (stage_rows["status"] != "done") & (
        stage_rows["metric"].isna() | (stage_rows["metric"] == column.metric)
    )
    failed = stage_rows[not_done].drop_duplicates("run")[["run", "reason"]]
    out = runs.merge(done[["run", "value"]], on="run", how="left").merge(engine, on="run", how="left")
    out = out.merge(failed, on="run", how="left")
    out["value"] = out["value"] * column.scale
    not_run = ~out["run"].isin(stage_rows["run"])
    out.loc[not_run, "reason"] = f"{column.stage} not started"
    absent = out["value"].isna() & out["reason"].isna()
    out.loc[absent, "reason"] = f"no '{column.metric}' in {column.stage} result"
    return out


def _exclusion_note(excluded: pd.DataFrame) -> str:
    """'not counted: run r (seed 1): reason; ...' naming at most MAX_NAMED_RUNS runs."""
    excluded = excluded.sort_values(["seed", "run"], na_position="last")
    named = [f"{r.run} (seed {r.seed}): {r.reason}" for r in excluded.head(MAX_NAMED_RUNS).itertuples()]
    more = len(excluded) - len(named)
    return "not counted: " + "; ".join(named) + (f"; and {more} more (see results.csv)" if more > 0 else "")


class _Context:
    """What cell building shares: the spec, references, notes, sources and per-run recipes."""

    def __init__(self, sub: pd.DataFrame, spec: TableSpec, refs: References, rows: pd.DataFrame | None = None) -> None:
        self.sub, self.spec, self.refs = sub, spec, refs
        self.rows = sub if rows is None else rows  # every row read, for stages of other runs a run builds on
        self.notes = NoteBook()
        self.sources: list[str] = []
        self._recipes: dict[tuple[str, str], dict[str, Any]] | None = None
        self._drift_cache: dict[tuple[str, str], RunDrift] = {}

    def source(self, text: str) -> None:
        if text not in self.sources:
            self.sources.append(text)

    def stage_recipe(self, run: str, stage: str) -> dict[str, Any]:
        if self._recipes is None:
            first = self.sub.drop_duplicates(["run", "stage"]).dropna(subset=["stage"])
            columns = [c for c in (*RECIPE_FIELDS, *DATA_FIELDS) if c in first.columns]
            self._recipes = first.set_index(["run", "stage"])[columns].to_dict("index")
        return self._recipes.get((run, stage), {})

    def recipes_of(self, ref_key: str) -> dict[str, Recipe]:
        """stage -> Recipe that a reference names."""
        return {stage: self.refs.recipes[key] for stage, key in self.refs.values[ref_key].recipe.items()}

    def datasets_of(self, ref_key: str) -> dict[str, DatasetRef]:
        """stage -> DatasetRef that a reference names."""
        return {stage: self.refs.datasets[key] for stage, key in self.refs.values[ref_key].dataset.items()}

    def dataset_drift(self, run: str, ref_key: str) -> RunDrift:
        """The differences of one run's data from one reference's datasets."""
        datasets = self.datasets_of(ref_key)
        return run_dataset_drift({stage: self.stage_recipe(run, stage) for stage in datasets}, datasets)

    def drift(self, run: str, ref_key: str) -> RunDrift:
        """The differences of one run from one reference's recipes (cached)."""
        if (run, ref_key) not in self._drift_cache:
            recipes = self.recipes_of(ref_key)
            stage_recipes = {stage: self.stage_recipe(run, stage) for stage in recipes}
            self._drift_cache[(run, ref_key)] = run_drift(stage_recipes, recipes)
        return self._drift_cache[(run, ref_key)]


def _attach_reference(cell: Cell, column: Column, key: Mapping[str, Any], label: str, ctx: _Context) -> None:
    """Resolve the column's reference for this row; note what is missing and cite what is used."""
    cell.has_reference_column = True
    ref_key = column.reference_key(key, label)
    cell.reference_key = ref_key
    cell.reference = ctx.refs.get(ref_key)
    if ref_key is None:
        cell.notes.append(ctx.notes.add(f"no reference declared for row '{label}'"))
    elif cell.reference is None:
        cell.notes.append(ctx.notes.add(f"no reference entry '{ref_key}' in reports/references"))
    elif cell.reference.value is None:
        cell.notes.append(ctx.notes.add(f"reference '{ref_key}' not transcribed yet ({cell.reference.source})"))
    else:
        ref = cell.reference
        shown = f"{ref.value:g}" + (f" ± {ref.std:g} (n={ref.n})" if ref.std is not None else "")
        ctx.source(
            f"{ref_key} = {shown} {ref.unit}".rstrip() + f": {ref.source}" + (f" ({ref.note})" if ref.note else "")
        )
        cell.floor = ctx.refs.floor_for(ref)
        if cell.floor is not None:
            ctx.source(f"noise floor {cell.floor.key} = {cell.floor.value:g} {cell.floor.unit}: {cell.floor.source}")


def truncation_text(stage_rows: pd.DataFrame, runs: int) -> str:
    """``"schedule cut short (max_steps or a budget): pretrain of 1 of 2 runs (0.00667 of 300 epochs)"``, or '' when
    every stage of the ``runs`` counted finished its planned schedule. ``stage_rows``: one row per (run, stage) of
    those runs; a stage is cut short when its result is marked ``truncated`` or ran fewer ``epochs`` than
    ``epochs_planned``."""
    if not len(stage_rows) or "epochs_planned" not in stage_rows:
        return ""
    done, planned = pd.to_numeric(stage_rows["epochs"]), pd.to_numeric(stage_rows["epochs_planned"])
    flagged = stage_rows["truncated"].eq(True) if "truncated" in stage_rows else False
    cut = stage_rows[flagged | (done < planned * (1 - 1e-9))]
    parts = []
    for stage, group in cut.groupby("stage", sort=False):
        ran = ", ".join(f"{d:.3g} of {p:g}" for d, p in zip(pd.to_numeric(group["epochs"]),
                                                            pd.to_numeric(group["epochs_planned"])))  # fmt: skip
        parts.append(f"{stage} of {group['run'].nunique()} of {runs} runs ({ran} epochs)")
    return "schedule cut short (max_steps or a budget): " + "; ".join(parts) if parts else ""


def inherited_pretrain(rows: pd.DataFrame, stages: pd.DataFrame) -> pd.DataFrame:
    """The pre-training rows of the runs whose encoders the runs of ``stages`` fine-tune (``init=run:<base>``: run
    ``<base>-s<seed>``, fixed-encoder's own protocol), one per run, with the stage named ``pretrain inherited from
    <the runs>``; empty when no run inherits one. ``rows``: every row read (``reports.results``)."""
    if "init" not in stages or "init" not in rows:
        return stages.iloc[0:0]
    own = stages.dropna(subset=["init"]).drop_duplicates("run")
    siblings = {f"{init.removeprefix('run:')}-s{seed}" for init, seed in zip(own["init"], own["seed"])
                if isinstance(init, str) and init.startswith("run:")}
    found = rows[rows["run"].isin(siblings) & rows["stage"].eq("pretrain")].drop_duplicates("run")
    return found.assign(stage=f"pretrain inherited from {', '.join(sorted(found['run']))}")


def _add_drift(cell: Cell, runs_counted: pd.DataFrame, engine: str | None, ctx: _Context) -> None:
    """Protocol-drift notes for the runs counted in a cell, one note per distinct difference; a run cut short of its
    schedule is marked whether or not the cell has a reference."""
    stages = ctx.sub[ctx.sub["run"].isin(runs_counted["run"])].drop_duplicates(["run", "stage"])
    stages = pd.concat([stages, inherited_pretrain(ctx.rows, stages)], ignore_index=True)
    truncated = truncation_text(stages, runs_counted["run"].nunique())
    if truncated:
        cell.drift.append(truncated)
        cell.notes.append(ctx.notes.add(truncated))
    ref = cell.reference
    if ref is None or ref.value is None:
        return
    if ref.engine and engine and ref.engine != engine:
        cell.drift.append(f"detection engine {engine} vs {ref.engine} (reference)")
    if ref.recipe and len(runs_counted):
        text = summarize_drift([ctx.drift(run, ref.key) for run in runs_counted["run"]], ctx.recipes_of(ref.key))
        if text:
            cell.drift.append(text)
    for text in cell.drift:
        if text != truncated:
            cell.notes.append(ctx.notes.add(f"protocol drift from the reference recipe: {text}"))
    if ref.dataset and len(runs_counted):
        runs = runs_counted["run"]
        text = summarize_dataset_drift([ctx.dataset_drift(run, ref.key) for run in runs], ctx.datasets_of(ref.key))
        if text:
            cell.drift.append(f"dataset not the reference's: {text}")
            cell.notes.append(ctx.notes.add(cell.drift[-1]))


def _metric_cell(
    group: pd.DataFrame,
    n_missing_seeds: int,
    column: Column,
    ctx: _Context,
    label: str,
    key: Mapping[str, Any],
    engine: str | None,
) -> Cell:
    planned = group[group["reason"] != NOT_PLANNED_REASON]  # a stage a run never has is not missing
    not_applicable = len(group) > 0 and len(planned) == 0
    group = planned
    counted = group[group["value"].notna()]
    cell = interval_cell(mean_interval(counted["value"].tolist()), len(group) + n_missing_seeds, column.digits)
    cell.not_applicable = not_applicable
    if column.reference is not None:
        _attach_reference(cell, column, key, label, ctx)
    excluded = group[group["value"].isna()]
    if len(excluded):
        cell.notes.append(ctx.notes.add(_exclusion_note(excluded)))
    _add_drift(cell, counted, engine, ctx)
    return cell


def _budget_per_run(runs: pd.DataFrame, sub: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Per run: GPU-hours summed over the budget stages (NaN unless all are done and recorded), GFLOPs
    (from any stage), images/s (first budget stage)."""
    first = sub.drop_duplicates(["run", "stage"])
    done = first[first["stage"].isin(spec.budget_stages) & (first["status"] == "done")]
    hours = pd.to_numeric(done["gpu_hours"], errors="coerce").groupby(done["run"])
    complete = hours.count() == len(spec.budget_stages)
    total_hours = hours.sum(min_count=1).where(complete)
    throughput = done[done["stage"] == spec.budget_stages[0]].set_index("run")["images_per_s"]
    flops = sub.dropna(subset=["gflops"]).drop_duplicates("run").set_index("run")["gflops"]
    out = runs[["run", "seed", "label"]].copy()
    out["gpu_hours"] = pd.to_numeric(out["run"].map(total_hours), errors="coerce")
    out["gflops"] = pd.to_numeric(out["run"].map(flops), errors="coerce")
    out["images_per_s"] = pd.to_numeric(out["run"].map(throughput), errors="coerce")
    return out


def _row_notes(group: pd.DataFrame, spec: TableSpec, ctx: _Context) -> tuple[list[int], int]:
    """Row-level notes (missing seeds, mixed runs) and the number of declared seeds without a run."""
    notes, n_missing = [], 0
    if spec.seeds is not None:
        missing = sorted(set(spec.seeds) - set(group["seed"].dropna().astype(int)))
        n_missing = len(missing)
        if missing:
            notes.append(ctx.notes.add(f"seed(s) {', '.join(map(str, missing))} missing: no run directory"))
    if len(group) == 0 and spec.seeds is None:
        notes.append(ctx.notes.add("no runs"))
    if len(group) > group["seed"].nunique():
        differ = [c for c in ("method", "backbone", "setting") if c not in spec.rows and group[c].nunique() > 1]
        notes.append(
            ctx.notes.add(
                "row averages runs that differ in "
                + (", ".join(differ) or "run name")
                + "; add them to rows or filters"
            )
        )
    return notes, n_missing


def _by_label(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {str(label): group for label, group in frame.groupby("label", sort=False)}


def _metric_columns(
    spec: TableSpec, sub: pd.DataFrame, runs: pd.DataFrame
) -> tuple[list[TableColumn], list[dict[str, pd.DataFrame]]]:
    """The displayed metric columns (one per detection engine where engines differ) and their per-run
    values grouped by row label."""
    columns, per_run = [], []
    for column in spec.columns:
        values = _per_run(runs, sub, column)
        engines = _engines(sub[sub["stage"] == column.stage])
        for engine in engines:
            columns.append(
                TableColumn(title=column.title + (f" [{engine}]" if engine else ""), column=column, engine=engine)
            )
            per_run.append(_by_label(values[values["engine"] == engine] if len(engines) > 1 else values))
    return columns, per_run


def _budget_columns(spec: TableSpec) -> list[TableColumn]:
    stages = "+".join(spec.budget_stages)
    return [
        TableColumn(title=f"GPU-h ({stages})", budget_field="gpu_hours"),
        TableColumn(title="GFLOPs", budget_field="gflops"),
        TableColumn(title=f"img/s ({spec.budget_stages[0]})", budget_field="images_per_s"),
    ]


def build_table(df: pd.DataFrame, spec: TableSpec, refs: References, every: pd.DataFrame | None = None) -> TableData:
    """Aggregate the results for one table spec (see the module docstring for the rules). ``every``: the rows of
    every run read, where ``df`` holds only some (``--only``): the pre-training a run inherits is looked up there."""
    sub = _select(df, spec)
    ctx = _Context(sub, spec, refs, df if every is None else every)
    runs = _run_index(sub, spec)
    columns, per_run = _metric_columns(spec, sub, runs)
    budget = _by_label(_budget_per_run(runs, sub, spec)) if spec.budget else {}
    budget_columns = _budget_columns(spec) if spec.budget else []
    runs_by_label = _by_label(runs)
    no_runs = pd.DataFrame(columns=[*runs.columns, "value", "reason", "gpu_hours", "gflops", "images_per_s"])
    rows = []
    for label, key in _row_order(runs, spec):
        group = runs_by_label.get(label, no_runs)
        row_notes, n_missing = _row_notes(group, spec, ctx)
        cells = [
            _metric_cell(values.get(label, no_runs), n_missing, col.column, ctx, label, key, col.engine)
            for col, values in zip(columns, per_run)
        ]
        for col in budget_columns:
            values = budget.get(label, no_runs)[col.budget_field].tolist()
            cells.append(interval_cell(mean_interval(values), len(group) + n_missing, digits=1))
        parts = spec.row_parts(key) if label in runs_by_label else label.split(" / ")
        rows.append(TableRow(label=label, parts=parts, key=dict(key), cells=cells, notes=row_notes))
    _add_margins(rows, spec)
    _note_unreadable(df, ctx)
    return TableData(spec=spec, columns=columns + budget_columns, rows=rows, notes=ctx.notes.texts, sources=ctx.sources,
                     legend=VALUES_LEGEND, verdicts=table_verdicts(spec, columns, per_run))


VALUES_LEGEND = (f"Cells: mean ± half-width of the {LEVEL:.0%} confidence interval over seeds (Student t, n-1 "
                 "degrees of freedom); n: runs counted (\"n=2 of 3\": one expected run has no result); n=1: one "
                 "run, no interval.")


def interval_cell(interval: Interval, n_expected: int, digits: int) -> Cell:
    """A cell holding ``interval`` (mean, sd, 95% half-width, n) of ``n_expected`` runs."""
    return Cell(mean=interval.mean, std=interval.sd, ci=interval.half, n=interval.n, n_expected=n_expected,
                digits=digits)


def seed_values(group: pd.DataFrame) -> dict[int, float]:
    """seed -> value of the runs of one row that count (done, finite, a stage the run plans)."""
    counted = group[(group["reason"] != NOT_PLANNED_REASON) & group["value"].notna()]
    return {int(s): float(v) for s, v in zip(counted["seed"], counted["value"]) if s is not None and s == s}


def table_verdicts(spec: TableSpec, columns: list[TableColumn],
                   per_run: list[dict[str, pd.DataFrame]]) -> list[Verdict]:
    """The verdict of each of the spec's findings on its column (the first detection engine where split)."""
    verdicts = []
    for finding in spec.findings:
        index = next(i for i, c in enumerate(columns)
                     if c.column is not None and (c.column.stage, c.column.metric) == (finding.stage, finding.metric))
        values = {label: seed_values(group) for label, group in per_run[index].items()}
        verdicts.append(decide(finding, values))
    return verdicts


def _add_margins(rows: list[TableRow], spec: TableSpec) -> None:
    """Each cell's margin over the control row (``spec.control``, e.g. random init) in the same column."""
    control = next((row for row in rows if row.label == spec.control), None) if spec.control else None
    if control is None:
        return
    for row in rows:
        if row is control:
            continue
        for cell, base in zip(row.cells, control.cells):
            if cell.mean is not None and base.mean is not None:
                cell.margin = cell.mean - base.mean


def _note_unreadable(df: pd.DataFrame, ctx: _Context) -> None:
    """Run directories without a readable identity cannot be placed in a row: list them under the table."""
    bad = df[df["stage"].isna() & df["method"].isna() & (df["status"] == "failed")]
    for row in bad.head(MAX_NAMED_RUNS).itertuples():
        ctx.notes.add(f"run directory '{row.run}' not counted: {row.reason}")
    if len(bad) > MAX_NAMED_RUNS:
        ctx.notes.add(f"and {len(bad) - MAX_NAMED_RUNS} more unreadable run directories (see results.csv)")
