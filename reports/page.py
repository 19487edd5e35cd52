"""``report.html``: the review bundle as one self-contained page a reviewer opens (offline, from the zip).

Everything is inline: the stylesheet (``reports.page_style``), the plots (the bundle's SVG files), the
tables (``reports.render``'s HTML, so a change of cell text shows here as in every format). No script, no
font, no image is fetched. Sections, each with an anchor in the sticky contents bar:

- header: experiment, variant, the command that made the page, date, git commits, versions, hardware;
- tables: each with its references and sources, delta and noise floor, numbered notes (drift, missing and
  not-counted cells with their reasons), marks explained on hover;
- training curves: one panel per stage and loss kind (``reports.curves``), seeds as bands;
- other plots; cost (projection beside measured GPU-hours and wall time, and the benchmark rows);
- deviations from the official recipes; runs (``reports.page_runs``); the bundle's files.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reports.cells import TableData
from reports.curves import Panel
from reports.page_html import esc, result_table, table
from reports.page_runs import MAX_DETAILED_RUNS, runs_section
from reports.page_style import CSS
from reports.run_files import RunFiles
from reports.speed import format_speed

PAGE_NAME = "report.html"


@dataclass
class PageContext:
    """What the page shows beyond the run directories; the CLI fills it from the experiment definition.

    Attributes:
        description: one line about the experiment.
        variant: the experiment's variant (``full``, ``debug``).
        command: the command line that made the bundle.
        cost: results -> rows of the projected cost per run and stage with the measured GPU-hours beside
            them (``experiments.cost.cost_rows``; a function, so that the results are read once);
            ``cost_note`` says what the projection assumes.
        recipes: the resolved recipe per run and stage (``experiments.recipe_table.recipe_rows``);
            ``recipe_note`` explains its marks.
        deviations: results -> the documented deviations from the official recipes that the runs use, one dict
            each, counting the planned runs and those with results (``experiments.deviations.deviation_rows``);
            ``deviation_note`` says where they are declared.
        pretrain_losses: method -> what its pre-training loss is (``baselines.pretrain_losses``: the method
            cards); the curves of one loss kind share an axis (``reports.curves.loss_kind``).
    """

    description: str = ""
    variant: str = ""
    command: str = ""
    cost: Callable[[pd.DataFrame], list[dict[str, Any]]] | None = None
    cost_note: str = ""
    recipes: list[dict[str, Any]] = field(default_factory=list)
    recipe_note: str = ""
    deviations: Callable[[pd.DataFrame], list[dict[str, Any]]] | None = None
    deviation_note: str = ""
    pretrain_losses: Mapping[str, str] = field(default_factory=dict)


def _distinct(files: Mapping[str, RunFiles], key: str) -> list[tuple[str, int]]:
    """Distinct summaries of one manifest field over the runs, with how many runs have each."""
    counts: Counter[str] = Counter()
    for f in files.values():
        value = (f.manifest or {}).get(key)
        if key == "git" and isinstance(value, dict) and value.get("commit"):
            counts[str(value["commit"]) + (" (dirty)" if value.get("dirty") else "")] += 1
        elif key == "hardware" and isinstance(value, dict):
            gpus = value.get("gpus") or []
            names = ", ".join(f"{n} x {g}" for g, n in Counter(map(str, gpus)).items()) or "no GPU"
            counts[f"{names}; {value.get('cpu_count', '?')} CPU cores ({value.get('cpu', '?')}); "
                   f"{value.get('platform', '')}"] += 1
        elif isinstance(value, dict):
            counts[", ".join(f"{k} {v}" for k, v in sorted(value.items()))] += 1
        elif value:
            counts[str(value)] += 1
    return counts.most_common()


def _facts(items: Sequence[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _listed(values: list[tuple[str, int]], n_runs: int) -> str:
    if not values:
        return "not recorded"
    return "<br>".join(f"<code>{esc(v)}</code>" + (f" ({n} of {n_runs} runs)" if n != n_runs else "")
                       for v, n in values)


def header(experiment: str, ctx: PageContext, files: Mapping[str, RunFiles], states: Mapping[str, Any]) -> str:
    n = len(states)
    complete = sum(bool(s["complete"]) for s in states.values())
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = [
        ("experiment", f"<b>{esc(experiment)}</b>" + (f": {esc(ctx.description)}" if ctx.description else "")),
        ("variant", esc(ctx.variant or "not given")),
        ("made by", f"<code>{esc(ctx.command or 'reports.report_experiment')}</code>"),
        ("date", esc(now)),
        ("runs", f"{n}: {complete} complete, {n - complete} with missing or failed stages"),
        ("git commits", _listed(_distinct(files, "git"), n)),
        ("versions", _listed(_distinct(files, "versions"), n)),
        ("hardware", _listed(_distinct(files, "hardware"), n)),
    ]
    return f"<h1>Review: {esc(experiment)}</h1>" + _facts(facts)


def tables_section(tables: Sequence[TableData]) -> str:
    if not tables:
        return "<p class='muted'>This experiment declares no tables.</p>"
    return "".join(f'<section id="table-{esc(t.spec.name)}">{result_table(t)}</section>' for t in tables)


def _svg(path: Path) -> str:
    """An SVG file's ``<svg>`` element, without the XML prolog (inline in HTML)."""
    text = path.read_text(encoding="utf-8")
    text = text[text.index("<svg"):]
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>"):] if 0 <= start < end else text


def curves_section(panels: Sequence[Panel], plot_dir: Path) -> str:
    if not panels:
        return "<p class='muted'>No run logged a training loss.</p>"
    parts = []
    for panel in panels:
        svg = plot_dir / f"loss_{panel.slug}.svg"
        n_runs = panel.curves["run"].nunique()
        parts.append(f'<figure id="curve-{esc(panel.slug)}">{_svg(svg)}<figcaption>{esc(panel.stage)}: '
                     f"{esc(panel.kind)}, {n_runs} run(s); a line is the mean over seeds, a band spans the lowest "
                     f"to the highest seed. File: plots/{esc(svg.name)}.</figcaption></figure>")
    return '<div class="figs">' + "".join(parts) + "</div>"


def plots_section(plot_files: Sequence[Path]) -> str:
    """The budget and ablation plots (every SVG but the loss panels)."""
    svgs = [p for p in plot_files if p.suffix == ".svg" and not p.name.startswith("loss_")]
    figures = "".join(f'<figure id="plot-{esc(p.stem)}">{_svg(p)}<figcaption>plots/{esc(p.name)}</figcaption></figure>'
                      for p in svgs)
    return f'<div class="figs">{figures}</div>' if figures else \
        "<p class='muted'>No table has results at several budgets or ablation values.</p>"


def measured_rows(results: pd.DataFrame, by_run: bool) -> list[dict[str, Any]]:
    """Measured GPU-hours and wall time of finished stages: per run and stage, or summed per method /
    backbone / setting and stage when there are too many runs to list."""
    done = results[results["status"] == "done"].drop_duplicates(["run", "stage"])
    if done.empty:
        return []
    keys = ["run", "stage"] if by_run else ["method", "backbone", "setting", "stage"]
    grouped = done.groupby(keys, dropna=False, sort=True)
    frame = grouped.agg(runs=("run", "nunique"), gpu_hours=("gpu_hours", "sum"), wall_s=("wall_time_s", "sum"),
                        img_s=("images_per_s", "mean")).reset_index()
    rows = []
    for r in frame.to_dict("records"):
        row = {k: r[k] for k in keys}
        if not by_run:
            row["runs"] = r["runs"]
        row.update({"GPU-hours": f"{r['gpu_hours']:.3g}", "wall time": _duration(r["wall_s"]),
                    "img/s": "-" if pd.isna(r["img_s"]) else f"{r['img_s']:.1f}"})
        rows.append(row)
    return rows


def _duration(seconds: float) -> str:
    if pd.isna(seconds):
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.1f} s"


def cost_section(ctx: PageContext, results: pd.DataFrame, speed: pd.DataFrame | None, n_runs: int) -> str:
    by_run = n_runs <= MAX_DETAILED_RUNS
    parts = ["<h3>Measured</h3>", table(measured_rows(results, by_run), numeric=("runs", "GPU-hours", "wall time",
             "img/s"), caption="from each finished stage's result.json (GPU-hours: all GPUs together; 0 on CPU)"
             + ("" if by_run else "; summed over the runs of each method / backbone / setting"))]
    if ctx.cost is not None:
        parts += ["<h3 id='projection'>Projected beside measured</h3>",
                  table(ctx.cost(results), numeric=("GPUs", "images", "GPU-hours", "measured GPU-hours"),
                        caption=ctx.cost_note)]
    if speed is not None and not speed.empty:
        parts += ["<h3 id='bench'>Benchmark rows (training-step speed)</h3>",
                  format_speed(speed, "html").replace("<table>", '<div class="scroll"><table>')
                  .replace("</table>", "</table></div>")]
    return "".join(parts)


def deviations_section(ctx: PageContext, results: pd.DataFrame) -> str:
    note = f"<p class='note'>{esc(ctx.deviation_note)}</p>" if ctx.deviation_note else ""
    rows = ctx.deviations(results) if ctx.deviations is not None else []
    if not rows:
        return "<p>No deviation from an official recipe is recorded for these runs.</p>" + note
    return table(rows, numeric=("planned runs", "with results")) + note


def files_section(bundle: Path, files: Sequence[Path]) -> str:
    rows = []
    for p in files:
        rel = p.relative_to(bundle).as_posix()
        rows.append(f'<li><a href="{esc(rel)}">{esc(rel)}</a> <span class="muted">'
                    f"({p.stat().st_size / 1024:.0f} KiB)</span></li>")
    return "<p>Beside this page in the bundle folder (and its zip):</p><ul>" + "".join(rows) + "</ul>"


SECTIONS = (("tables", "Tables"), ("curves", "Training curves"), ("plots", "Plots"), ("cost", "Cost"),
            ("deviations", "Deviations"), ("runs", "Runs"), ("files", "Files"))


def write_page(bundle: Path, exp_dir: Path, ctx: PageContext, results: pd.DataFrame,
               states: Mapping[str, Mapping[str, Any]], tables: Sequence[TableData], panels: Sequence[Panel],
               plot_files: Sequence[Path], run_files: Mapping[str, RunFiles], speed: pd.DataFrame | None,
               bundle_files: Sequence[Path]) -> Path:
    """Write ``<bundle>/report.html`` and return its path (see the module docstring for what it holds);
    ``states``: ``reports.page_runs.run_states(results)``."""
    body = {
        "tables": tables_section(tables),
        "curves": curves_section(panels, bundle / "plots"),
        "plots": plots_section(plot_files),
        "cost": cost_section(ctx, results, speed, len(states)),
        "deviations": deviations_section(ctx, results),
        "runs": runs_section(exp_dir, states, run_files, ctx.recipes, ctx.recipe_note) if states
        else "<p>No run directories.</p>",
        "files": files_section(bundle, bundle_files),
    }
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{title}</h2>{body[key]}</section>' for key, title in SECTIONS)
    experiment = exp_dir.name
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Review: {esc(experiment)}</title><style>{CSS}</style></head><body>"
        f"<nav>{nav}</nav><main>{header(experiment, ctx, run_files, states)}{sections}</main></body></html>\n"
    )
    path = bundle / PAGE_NAME
    path.write_text(page, encoding="utf-8")
    return path
