"""The one entry the CLI calls: ``mixmim-bench report EXP`` -> :func:`report_experiment`."""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.bundle import build_bundle
from reports.page import PAGE_NAME, PageContext
from reports.references import References, load_references
from reports.render import FORMATS, build_tables, format_tables
from reports.results import read_results, recorded_datasets
from reports.spec import TableSpec
from reports.speed import format_speed

DEFAULT_OUTPUT_NAME = "_report"  # default output folder inside the experiment folder (not read as a run)


class ReportError(ValueError):
    """The report cannot be made (no experiment folder, output placed where runs are read)."""


@dataclass
class ReportResult:
    """What a report produced.

    Attributes:
        markdown: the tables in markdown (what ``mixmim-bench report`` and ``run`` print).
        tables: format -> text for every requested format.
        bundle_dir: the review-bundle folder (``<out_dir>/<experiment>-report``, or ``-report-NNN`` with keep).
        zip_path: the zip of that folder.
        page: the bundle's ``report.html``.
        files: every file written (bundle contents and the zip).
        results: the results DataFrame the tables were built from.
        speed: the speed table in markdown ('' when no benchmark rows were given).
    """

    markdown: str
    tables: dict[str, str]
    bundle_dir: Path
    zip_path: Path
    page: Path
    files: list[Path] = field(default_factory=list)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)
    speed: str = ""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block, restored after (also on an error).

    Reading 10,000 runs allocates millions of objects (records, rows, parsed JSON) that form no cycles, yet
    every 700 allocations start a collection, and the older generations' collections walk ever more of the
    heap: about 900 collections, 0.6-0.8 s of CPU of a 5 s report (``scripts/bench_report.py``). Reference
    counting still frees everything without cycles; the few cycles (matplotlib figures) wait for the next
    collection after the block.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def default_output_dir(exp_dir: str | Path) -> Path:
    """``<exp_dir>/_report``: next to the runs, skipped by the results reader."""
    return Path(exp_dir) / DEFAULT_OUTPUT_NAME


def _check_output(exp_dir: Path, out_dir: Path) -> None:
    """An output folder inside the experiment must start with '_' or '.', or it would be read as a run."""
    try:
        rel = out_dir.resolve().relative_to(exp_dir.resolve())
    except ValueError:
        return
    if not rel.parts or not rel.parts[0].startswith(("_", ".")):
        raise ReportError(
            f"output folder {out_dir} is inside the experiment folder {exp_dir} and would be read "
            f"as a run; use a name starting with '_' (e.g. {default_output_dir(exp_dir)})"
        )


def report_experiment(
    exp_dir: str | Path,
    specs: Sequence[TableSpec],
    out_dir: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
    *,
    references: References | None = None,
    command: str | None = None,
    speed: pd.DataFrame | None = None,
    runs: Collection[str] | None = None,
    context: PageContext | None = None,
    keep: bool = False,
    full: bool = False,
) -> ReportResult:
    """Read an experiment's runs, render its tables, and write the review bundle with its page.

    Args:
        exp_dir: ``<output>/<experiment>`` with one folder per run.
        specs: the experiment's table specs.
        out_dir: where bundles go (default ``<exp_dir>/_report``): ``<experiment>-report/`` and its zip,
            replacing the previous ones.
        formats: formats returned in ``ReportResult.tables`` (the bundle always holds all of them).
        references: reference data; default every ``reports/references/*.yaml``.
        command: the command line to record in the bundle README (the CLI passes its own).
        speed: the speed table to add to the bundle (``reports.speed.speed_table`` of the benchmark store).
        runs: only these runs (folder names) in the tables and the bundle (``--only``); default every run.
        context: what the page shows beyond the run directories (header, cost, recipes, deviations).
        keep: keep earlier bundles: write ``<experiment>-report-NNN/`` with the next free NNN (``--keep``).
        full: copy every run's config, result, metrics and log files too (``--full-bundle``).

    Raises:
        ReportError: ``exp_dir`` is not a folder, or ``out_dir`` would be read as a run.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ReportError(f"no experiment folder {exp_dir} (run `mixmim-bench run {exp_dir.name}` first)")
    out_dir = Path(out_dir) if out_dir is not None else default_output_dir(exp_dir)
    _check_output(exp_dir, out_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ReportError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    refs = references if references is not None else load_references()
    with gc_paused():
        # every stage a table reads: a run's planned-but-unstarted stage is then 'missing', an unplanned one n/a
        manifests: dict[str, dict] = {}
        results = read_results(exp_dir, dict.fromkeys(stage for spec in specs for stage in spec.stages), manifests)
        every = results
        if runs is not None:
            results = results[results["run"].isin(list(runs))].reset_index(drop=True)
        specs = [spec.for_data(recorded_datasets(exp_dir, results["run"].unique())) for spec in specs]
        tables = build_tables(results, specs, refs, every)
        texts = {fmt: format_tables(tables, fmt) for fmt in dict.fromkeys([*formats, "markdown"])}
        bundle = build_bundle(exp_dir, specs, refs, out_dir, command=command, results=results, tables=tables,
                              speed=speed, runs=runs, context=context, keep=keep, full=full, manifests=manifests)
    zip_path = bundle.parent / f"{bundle.name}.zip"
    files = sorted(p for p in bundle.rglob("*") if p.is_file()) + [zip_path]
    return ReportResult(
        markdown=texts["markdown"],
        tables={f: texts[f] for f in formats},
        bundle_dir=bundle,
        zip_path=zip_path,
        page=bundle / PAGE_NAME,
        files=files,
        results=results,
        speed=format_speed(speed) if speed is not None and not speed.empty else "",
    )
