"""The review bundle: one folder (and a zip of it) with what a reviewer needs to check a table.

Layout of ``<out_dir>/<experiment>-report/``::

    report.html             the page a reviewer opens: every section below, self-contained (reports.page)
    README.md               index: what each file is and which command produced it
    tables.{md,tex,csv,html}, tables_standalone.tex
    speed.{md,tex,csv,html} training-step speed from the benchmark store (when it has rows for the runs)
    results.csv             every run / stage / metric read, with status and reason
    curves.csv              the training loss per logged step of every run and stage
    plots/*.svg             (and *.pdf with ``full=True``)
    references/*.yaml       the reference data the tables compared against
    runs/configs.yaml       every run's resolved config (one YAML document per run)
    runs/manifests.json     every run's manifest (run -> manifest)
    runs/<run>/...          with ``full=True`` only: every config, result, metrics and log file of each run

A new report replaces the bundle of the same experiment folder (built beside it, then swapped in, so a
reader never sees half a bundle); ``keep=True`` instead claims the next free ``<experiment>-report-NNN``
(an atomic ``mkdir``) and never touches an existing bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.bundle_index import write_index
from reports.cells import TableData
from reports.curves import CURVE_STAGES, panels
from reports.page import PageContext, write_page
from reports.page_runs import run_states
from reports.plots import PLOT_FORMATS, make_plots
from reports.references import References
from reports.render import EXTENSIONS, FORMATS, build_tables, format_tables, latex_document
from reports.results import read_curves, read_results, run_identities
from reports.run_files import RunFiles, read_run_files
from reports.spec import TableSpec
from reports.speed import write_speed_files

COPIED_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".log", ".out", ".err", ".txt", ".csv", ".md")
SKIPPED_DIRS = ("tb",)
MAX_COPY_BYTES = 20 * 2**20
MAX_VERSIONS = 999
ZIP_LEVEL = 1  # deflate level: 3x faster than the default 6 for a few % more bytes


class BundleExistsError(FileExistsError):
    """No free bundle version is left in the output folder."""


def claim_bundle_dir(out_dir: Path, experiment: str) -> Path:
    """Create and return ``<out_dir>/<experiment>-report-NNN`` with the first free NNN (never an existing one).

    ``mkdir`` without ``exist_ok`` is atomic, so two reports started at once get different folders.

    Raises:
        BundleExistsError: all MAX_VERSIONS versions exist (delete old bundles).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for version in range(1, MAX_VERSIONS + 1):
        path = out_dir / f"{experiment}-report-{version:03d}"
        if (out_dir / f"{path.name}.zip").exists():
            continue
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise BundleExistsError(f"{out_dir} already holds {MAX_VERSIONS} bundles of '{experiment}'; delete old ones")


def copy_run_files(exp_dir: Path, dest: Path, runs: Collection[str] | None = None) -> tuple[list[Path], list[str]]:
    """Copy each run's configs, manifests, results, metrics and logs (no checkpoints, no TensorBoard);
    ``runs``: only these run folders.

    Returns:
        (copied files, skipped files as 'run/path (why)').
    """
    copied, skipped = [], []
    for run_dir in sorted(p for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
                          and (runs is None or p.name in runs)):
        for root, dirs, files in os.walk(run_dir):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
            for name in sorted(files):
                src = Path(root) / name
                rel = src.relative_to(exp_dir)
                if name.startswith(".") or not name.endswith(COPIED_SUFFIXES):
                    if not name.startswith("."):
                        skipped.append(f"{rel} (not a config, result or log)")
                    continue
                if src.stat().st_size > MAX_COPY_BYTES:
                    skipped.append(f"{rel} (larger than {MAX_COPY_BYTES // 2**20} MiB)")
                    continue
                target = dest / rel
                if not target.parent.is_dir():  # once per folder (a mkdir per file cost 17 s for 10,000 runs)
                    target.parent.mkdir(parents=True)
                shutil.copy2(src, target)
                copied.append(target)
    return copied, skipped


def write_tables(tables: Sequence[TableData], bundle: Path) -> list[Path]:
    """``tables.<ext>`` in every format, plus a standalone LaTeX document."""
    paths = []
    for fmt in FORMATS:
        path = bundle / f"tables.{EXTENSIONS[fmt]}"
        path.write_text(format_tables(tables, fmt), encoding="utf-8")
        paths.append(path)
    standalone = bundle / "tables_standalone.tex"
    standalone.write_text(latex_document(r"\input{tables.tex}"), encoding="utf-8")
    return [*paths, standalone]


def new_bundle_dir(out_dir: Path, experiment: str, keep: bool) -> tuple[Path, Path]:
    """(folder to write into, its final path): with ``keep`` the next free version, written in place;
    otherwise a hidden folder beside ``<experiment>-report`` that :func:`publish` swaps in."""
    if keep:
        path = claim_bundle_dir(out_dir, experiment)
        return path, path
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{experiment}-report"
    staging = out_dir / f".{final.name}.new-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging, final


def publish(staging: Path, final: Path) -> Path:
    """Zip ``staging`` as ``<final>.zip`` (top folder ``<final.name>/``) and move it to ``final``, replacing
    the previous bundle and zip of that name; returns ``final``."""
    if staging != final:
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    tmp_zip = final.parent / f".{final.name}.zip-{os.getpid()}"
    with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
        for root, dirs, names in os.walk(final):
            dirs.sort()
            for name in sorted(names):
                path = Path(root) / name
                zf.write(path, path.relative_to(final.parent).as_posix())
    os.replace(tmp_zip, final.parent / f"{final.name}.zip")
    return final


def write_run_summaries(files: Mapping[str, RunFiles], dest: Path) -> list[Path]:
    """``runs/configs.yaml`` (one YAML document per run, in run order) and ``runs/manifests.json``."""
    dest.mkdir(parents=True, exist_ok=True)
    configs = dest / "configs.yaml"
    configs.write_text("".join(f"--- # {run}\n{f.config_text or '{}  # no config.yaml'}\n" for run, f in files.items()),
                       encoding="utf-8")
    manifests = dest / "manifests.json"
    # one line per run; compact (an indented dump runs the pure-Python encoder: seconds for 10,000 runs)
    lines = [f"{json.dumps(run)}: {json.dumps(f.manifest, sort_keys=True)}" for run, f in files.items()]
    manifests.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    return [configs, manifests]


def write_results_csv(results: pd.DataFrame, path: Path) -> Path:
    """``results.csv``: every column as read, floats with 6 significant digits (``%.6g``), NaN empty.

    The same text as ``to_csv(float_format="%.6g")``, which calls a Python formatter per cell (0.4 s of CPU
    for 50,000 rows); the float columns are formatted here in one comprehension each (half the time).
    """
    text = results.copy(deep=False)
    for column in results.columns[[dtype in (np.float64, np.float32) for dtype in results.dtypes]]:
        text[column] = ["" if v != v else f"{v:.6g}" for v in results[column].tolist()]  # v != v: NaN
    text.to_csv(path, index=False, lineterminator="\n")
    return path


def write_curves(exp_dir: Path, results: pd.DataFrame, dest: Path, pretrain_losses: Mapping[str, str] | None = None,
                 ) -> tuple[Path, list]:  # fmt: skip
    """``curves.csv`` (run, stage, step, loss of every run and stage that logged one) and the loss panels
    (``pretrain_losses``: method -> its pre-training loss kind, ``reports.curves.loss_kind``)."""
    identities = run_identities(results) if len(results) else {}
    present = set(results["stage"].dropna().tolist()) if len(results) else set()  # once, not per stage
    stages = [s for s in CURVE_STAGES if s in present]
    by_stage = {stage: read_curves(exp_dir, stage, "loss", identities) for stage in stages}
    frames = [c.assign(stage=stage)[["run", "stage", "step", "value"]] for stage, c in by_stage.items() if len(c)]
    table = pd.concat(frames) if frames else pd.DataFrame(columns=["run", "stage", "step", "value"])
    path = dest / "curves.csv"
    table.rename(columns={"value": "loss"}).to_csv(path, index=False, lineterminator="\n")  # no float_format: 2x faster
    return path, panels(by_stage, pretrain_losses)


def build_bundle(
    exp_dir: str | Path,
    specs: Sequence[TableSpec],
    references: References,
    out_dir: str | Path,
    *,
    command: str | None = None,
    results: pd.DataFrame | None = None,
    tables: Sequence[TableData] | None = None,
    speed: pd.DataFrame | None = None,
    runs: Collection[str] | None = None,
    context: PageContext | None = None,
    keep: bool = False,
    full: bool = False,
    manifests: Mapping[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the review bundle folder, its page and its zip; return the folder.

    Args:
        exp_dir: ``<output>/<experiment>`` holding the run directories.
        specs: the experiment's tables.
        references: reference data (``reports.references.load_references()``).
        out_dir: where bundles go: ``<experiment>-report/`` and ``.zip`` beside it.
        command: the command line that produced the bundle (shown in its README and page).
        results, tables: already read / aggregated data, to avoid reading twice.
        speed: the speed table (``reports.speed.speed_table``) to include as ``speed.*``, if any.
        runs: only these runs (folder names); default every run.
        context: what the page shows beyond the run directories (``reports.page.PageContext``).
        keep: write a new ``<experiment>-report-NNN`` and keep every earlier bundle (default: replace
            ``<experiment>-report``).
        full: also copy every config, result, metrics and log file of each run into ``runs/<run>/``, and
            write each plot as PDF too.
        manifests: run -> manifest as ``read_results(..., manifests=...)`` parsed them (not parsed again).
    """
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    if results is None:
        results = read_results(exp_dir)
    if tables is None:
        tables = build_tables(results, specs, references)
    command = command or f"reports.build_bundle({str(exp_dir)!r}, ..., out_dir={str(out_dir)!r})"
    context = context or PageContext()
    context.command = context.command or command
    staging, final = new_bundle_dir(out_dir, exp_dir.name, keep)
    files = write_tables(tables, staging)
    files += write_speed_files(speed if speed is not None else pd.DataFrame(), staging)
    results_csv = write_results_csv(results, staging / "results.csv")
    curves_csv, loss_panels = write_curves(exp_dir, results, staging, context.pretrain_losses)
    files += [results_csv, curves_csv]
    plot_files = make_plots(results, tables, loss_panels, staging / "plots", PLOT_FORMATS if full else ("svg",))
    files += plot_files
    for ref_file in references.files:
        target = staging / "references" / ref_file.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(ref_file, target)
        files.append(target)
    run_names = sorted(results["run"].dropna().astype(str).unique()) if len(results) else []
    run_files = read_run_files(exp_dir, run_names, manifests)
    files += write_run_summaries(run_files, staging / "runs")
    copied, skipped = [], []
    if full:
        copied, skipped = copy_run_files(exp_dir, staging / "runs", None if runs is None else set(runs))
    states = run_states(results) if len(results) else {}
    page = write_page(staging, exp_dir, context, results, states, tables, loss_panels, plot_files, run_files, speed,
                      files)
    write_index(staging, exp_dir, results, [page, *files], copied, skipped, command,
                {run: f.manifest for run, f in run_files.items()}, states, full=full)
    return publish(staging, final)
