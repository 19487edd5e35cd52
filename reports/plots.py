"""Plots (PNG + PDF): accuracy against pre-training epochs and GPU-hours, loss curves, ablations.

Uses matplotlib's object API (``matplotlib.figure.Figure``), which renders with Agg without touching the
global pyplot state or needing a display.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.cells import TableData
from reports.results import SETTING_PREFIX
from reports.spec import TableSpec

MAX_LEGEND = 12
_PDF_METADATA = {"CreationDate": None}  # reproducible PDFs


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata=_PDF_METADATA)
    return paths


def _legend(ax: Axes, n_lines: int) -> None:
    if 0 < n_lines <= MAX_LEGEND:
        ax.legend(fontsize="small")


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
    out["label"] = [spec.row_label(r) for r in out[[k for k in spec.rows if k in out.columns]].to_dict("records")]
    return out


def plot_budget(df: pd.DataFrame, spec: TableSpec, stage: str, metric: str, out_dir: Path) -> list[Path]:
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
            ax.errorbar(stats[x], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{stage} {metric}")
    _legend(axes[0], points["label"].nunique())
    fig.suptitle(f"{spec.title}: {stage} {metric} vs pre-training budget")
    return _save(fig, out_dir, f"{spec.name}_{stage}_{metric}_vs_budget")


def plot_loss_curves(curves: pd.DataFrame, out_dir: Path, stage: str = "pretrain") -> list[Path]:
    """Loss per step, mean over seeds for each method / backbone / setting."""
    if curves.empty:
        return []
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    groups = curves.groupby(["method", "backbone", "setting"], dropna=False, sort=True)
    for (method, backbone, setting), group in groups:
        mean = group.groupby("step")["value"].mean()
        label = " / ".join(str(p) for p in (method, backbone, setting) if isinstance(p, str) and p)
        ax.plot(mean.index, mean.values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{stage} loss (mean over seeds)")
    ax.grid(alpha=0.3)
    _legend(ax, groups.ngroups)
    return _save(fig, out_dir, f"{stage}_loss")


def plot_ablation(table: TableData, out_dir: Path) -> list[Path]:
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
    return _save(fig, out_dir, f"{spec.name}_ablation")


def make_plots(df: pd.DataFrame, tables: Sequence[TableData], curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every plot the experiment's data supports; returns the files written."""
    paths = plot_loss_curves(curves, out_dir)
    for table in tables:
        for column in table.spec.columns:
            if column.stage != "pretrain":
                paths += plot_budget(df, table.spec, column.stage, column.metric, out_dir)
        paths += plot_ablation(table, out_dir)
    return paths
