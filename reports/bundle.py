"""The review bundle: one folder (and a zip of it) with everything a reviewer needs to check a table.

Layout of ``<out_dir>/<experiment>-report-NNN/``::

    README.md               index: what each file is and which command produced it
    tables.{md,tex,csv,html}, tables_standalone.tex
    speed.{md,tex,csv,html} training-step speed from the benchmark store (when it has rows for the runs)
    results.csv             every run / stage / metric read, with status and reason
    plots/*.png, *.pdf
    references/*.yaml       the reference data the tables compared against
    runs/<run>/...          config.yaml, manifest.json, <stage>/result.json, metrics.jsonl, logs

Bundles are versioned: each call claims the next free ``NNN`` (an atomic ``mkdir``), so a previous bundle is
never overwritten.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from reports.bundle_index import write_index
from reports.cells import TableData
from reports.plots import make_plots
from reports.references import References
from reports.render import EXTENSIONS, FORMATS, build_tables, format_tables, latex_document
from reports.results import read_curves, read_results
from reports.spec import TableSpec
from reports.speed import write_speed_files

COPIED_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".log", ".out", ".err", ".txt", ".csv", ".md")
SKIPPED_DIRS = ("tb",)
MAX_COPY_BYTES = 20 * 2**20
MAX_VERSIONS = 999


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
) -> Path:
    """Write a new, versioned review bundle folder and its zip; return the folder.

    Args:
        exp_dir: ``<output>/<experiment>`` holding the run directories.
        specs: the experiment's tables.
        references: reference data (``reports.references.load_references()``).
        out_dir: where bundles go; each call adds ``<experiment>-report-NNN/`` and ``.zip`` beside it.
        command: the command line that produced the bundle (shown in its README).
        results, tables: already read / aggregated data, to avoid reading twice.
        speed: the speed table (``reports.speed.speed_table``) to include as ``speed.*``, if any.
        runs: only these runs (folder names); default every run.
    """
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    if results is None:
        results = read_results(exp_dir)
    if tables is None:
        tables = build_tables(results, specs, references)
    bundle = claim_bundle_dir(out_dir, exp_dir.name)
    files = write_tables(tables, bundle)
    files += write_speed_files(speed if speed is not None else pd.DataFrame(), bundle)
    results_csv = bundle / "results.csv"
    results.to_csv(results_csv, index=False, float_format="%.6g", lineterminator="\n")
    files.append(results_csv)
    curves = read_curves(exp_dir)
    if runs is not None:
        curves = curves[curves["run"].isin(list(runs))]
    files += make_plots(results, tables, curves, bundle / "plots")
    for ref_file in references.files:
        target = bundle / "references" / ref_file.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(ref_file, target)
        files.append(target)
    run_files, skipped = copy_run_files(exp_dir, bundle / "runs", None if runs is None else set(runs))
    write_index(
        bundle,
        exp_dir,
        results,
        files,
        run_files,
        skipped,
        command or f"reports.build_bundle({str(exp_dir)!r}, ..., out_dir={str(out_dir)!r})",
    )
    shutil.make_archive(str(bundle), "zip", root_dir=bundle.parent, base_dir=bundle.name)
    return bundle
