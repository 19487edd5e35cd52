"""Plots (SVG, and PDF on request): accuracy against pre-training epochs and GPU-hours, loss curves, ablations.

SVG is what the review page inlines (text kept as text: small, sharp, searchable); PDF, for papers, costs as
much again to draw (about 0.15 s of CPU a figure), so it is written only when asked (``formats``).
Uses matplotlib's object API (``matplotlib.figure.Figure``), which renders without touching the global
pyplot state or needing a display.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.cells import TableData
from reports.curves import Panel, seed_bands
from reports.results import SETTING_PREFIX, plain_records
from reports.spec import TableSpec

MAX_LEGEND = 12
_PDF_METADATA = {"CreationDate": None}  # reproducible files
_SVG_METADATA = {"Date": None}
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "mixmim-report"}  # text as text; stable ids


PLOT_FORMATS = ("svg", "pdf")


def _save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = ("svg",)) -> list[Path]:
    """``<stem>.<format>`` for each of ``formats`` (of :data:`PLOT_FORMATS`); returns the paths in that order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.14, top=0.88)  # fixed margins: a "tight" bbox draws twice
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        with matplotlib.rc_context(_SVG_RC):
            fig.savefig(path, metadata=_SVG_METADATA if fmt == "svg" else _PDF_METADATA)
        paths.append(path)
    return paths


def _legend(ax: Axes, n_lines: int) -> None:
    if 0 < n_lines <= MAX_LEGEND:
        ax.legend(fontsize="small")


def _line_with_std(ax: Axes, x: pd.Series, mean: pd.Series, std: pd.Series, label: str) -> None:
    """A line with markers and a vertical ±std bar at each point: two artists (``errorbar`` makes a line,
    caps and bars per call: 3x the drawing time when a table has many rows)."""
    (line,) = ax.plot(x, mean, marker="o", label=label)
    ax.vlines(x, mean - std, mean + std, color=line.get_color(), linewidth=1)


def _budget_points(df: pd.DataFrame, spec: TableSpec, stage: str, metric: str) -> pd.DataFrame:
    """Per run: the metric (done only), the run's pre-training epochs and GPU-hours, and the row label."""
    done = df[(df["status"] == "done") & df["value"].notna()]
    for key, wanted in spec.filters.items():
        allowed = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        done = done[done[key].isin(allowed)] if key in done.columns else done.iloc[0:0]
    if spec.seeds is not None:
        done = done[done["seed"].isin(list(spec.seeds))]
    values = done[(done["stage"] == stage) & (done["metric"] == metric)].drop_duplicates("run")
    pretrain = done[done["stage"] == "pretrain"].drop_duplicates("run").set_index("run")
    out = values[["run", *[k for k in spec.rows if k in values.columns], "value"]].copy()
    out["epochs"] = pd.to_numeric(out["run"].map(pretrain["epochs"]), errors="coerce")
    out["gpu_hours"] = pd.to_numeric(out["run"].map(pretrain["gpu_hours"]), errors="coerce")
    out["label"] = [spec.row_label(r) for r in plain_records(out, [k for k in spec.rows if k in out.columns])]
    return out


def plot_budget(df: pd.DataFrame, spec: TableSpec, stage: str, metric: str, out_dir: Path,
                formats: Sequence[str] = ("svg",)) -> list[Path]:
    """``metric`` against pre-training epochs (left) and pre-training GPU-hours (right), one line per row.

    Written for tables with a ``method`` row key, when some row has results at two or more budgets.
    """
    if "method" not in spec.rows:
        return []
    points = _budget_points(df, spec, stage, metric).dropna(subset=["epochs"])
    if points.empty or points.groupby("label")["epochs"].nunique().max() < 2:
        return []
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x, xlabel in zip(axes, ("epochs", "gpu_hours"), ("pre-training epochs", "pre-training GPU-hours")):
        for label, group in points.dropna(subset=[x]).groupby("label", sort=True):
            stats = group.groupby(x)["value"].agg(["mean", "std"]).reset_index().sort_values(x)
            _line_with_std(ax, stats[x], stats["mean"], stats["std"].fillna(0), label)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{stage} {metric}")
    _legend(axes[0], points["label"].nunique())
    fig.suptitle(f"{spec.title}: {stage} {metric} vs pre-training budget")
    return _save(fig, out_dir, f"{spec.name}_{stage}_{metric}_vs_budget", formats)


def plot_loss_panel(panel: Panel, out_dir: Path, formats: Sequence[str] = ("svg",)) -> list[Path]:
    """One stage's loss of one kind per step: the mean over seeds per method / backbone / setting, and the
    band from the lowest to the highest seed where a line has several seeds. Written as ``loss_<slug>``."""
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.subplots()
    lines = 0
    for label, stats, n_seeds in seed_bands(panel.curves):
        (line,) = ax.plot(stats["step"], stats["mean"], label=label + (f" ({n_seeds} seeds)" if n_seeds > 1 else ""))
        if n_seeds > 1:
            ax.fill_between(stats["step"], stats["lo"], stats["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
        lines += 1
    ax.set_xlabel("step")
    ax.set_ylabel(f"{panel.kind} (mean over seeds)")
    ax.set_title(f"{panel.stage}: {panel.kind}", fontsize="medium")
    ax.grid(alpha=0.3)
    _legend(ax, lines)
    return _save(fig, out_dir, f"loss_{panel.slug}", formats)


def plot_ablation(table: TableData, out_dir: Path, formats: Sequence[str] = ("svg",)) -> list[Path]:
    """Each metric column against the ablated value (a table whose only row key is a ``setting.*``)."""
    spec = table.spec
    if spec.kind != "values" or len(spec.rows) != 1 or not spec.rows[0].startswith(SETTING_PREFIX):
        return []
    metric_cols = [(i, c) for i, c in enumerate(table.columns) if c.column is not None]
    xs = [row.key.get(spec.rows[0]) for row in table.rows]
    numeric = all(isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) for x in xs)
    positions = xs if numeric else list(range(len(xs)))
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    plotted = 0
    for i, col in metric_cols:
        cells = [row.cells[i] for row in table.rows]
        pts = [(x, c.mean, c.ci or 0.0) for x, c in zip(positions, cells) if c.mean is not None]
        if pts:
            px, py, pe = zip(*pts)
            ax.errorbar(px, py, yerr=pe, marker="o", capsize=3, label=col.title)
            plotted += 1
        paper = [(x, c.paper) for x, c in zip(positions, cells) if c.paper is not None]
        if paper:
            ax.scatter(*zip(*paper), marker="x", color="black", label=f"{col.title} (paper)")
    if not plotted:
        return []
    if not numeric:
        ax.set_xticks(positions, [str(x) for x in xs])
    ax.set_xlabel(spec.row_headers[0])
    ax.set_ylabel(", ".join(dict.fromkeys(f"{c.column.stage} {c.column.metric}" for _, c in metric_cols)))
    ax.grid(alpha=0.3)
    _legend(ax, plotted)
    ax.set_title(spec.title)
    return _save(fig, out_dir, f"{spec.name}_ablation", formats)


def make_plots(df: pd.DataFrame, tables: Sequence[TableData], panels: Sequence[Panel], out_dir: Path,
               formats: Sequence[str] = ("svg",)) -> list[Path]:
    """Every plot the experiment's data supports (loss panels from ``reports.curves.panels``) in ``formats``;
    returns the files written."""
    paths = [p for panel in panels for p in plot_loss_panel(panel, out_dir, formats)]
    for table in tables:
        for column in table.spec.columns:
            if column.stage != "pretrain":
                paths += plot_budget(df, table.spec, column.stage, column.metric, out_dir, formats)
        paths += plot_ablation(table, out_dir, formats)
    return paths
