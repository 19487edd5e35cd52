"""The review bundle's README: what each file is, which command produced it, and the state of every run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from reports.page_html import cell_text
from reports.page_runs import OK_STATUSES

MAX_LISTED_SKIPPED = 50
_TABLE_FILES = {
    "report.html": "the review page: header, tables with references and notes, training curves, cost, "
    "deviations, runs; self-contained (open it in any browser, offline)",
    "tables.md": "the experiment's tables, markdown (paste into a README or an issue)",
    "tables.tex": "the tables as LaTeX table environments (\\input into a paper)",
    "tables_standalone.tex": "a document around tables.tex: `pdflatex tables_standalone.tex` checks it compiles",
    "tables.csv": "the tables, tidy: one line per cell with mean, std, n, paper value, source, delta, noise "
    "floor, drift and notes",
    "tables.html": "the tables as an HTML fragment",
    "speed.md": "training-step speed of the experiment's methods and backbones from the benchmark store "
    "(`mixmim-bench bench`): img/s, ms/step, memory, FLOPs, MFU, ratios to the official attention",
    "speed.tex": "the speed table as a LaTeX tabular",
    "speed.csv": "the speed table, every field of the benchmark rows (device, versions, repeats)",
    "speed.html": "the speed table as an HTML fragment",
    "results.csv": "every run / stage / metric read from the run directories, with status (done, missing, "
    "failed, not_planned) and the reason; only status 'done' rows enter the tables",
    "curves.csv": "the training loss per logged step of every run and stage (what the training curves plot)",
    "runs/configs.yaml": "every run's fully resolved configuration, one YAML document per run",
    "runs/manifests.json": "every run's manifest (run identity, git commit, versions, hardware, per-stage recipe)",
}
_RUN_FILES = [  # with report --full-bundle only
    ("runs/<run>/config.yaml", "the run's fully resolved configuration"),
    ("runs/<run>/manifest.json", "run identity, git commit, versions, hardware, per-stage recipe"),
    ("runs/<run>/<stage>/result.json", "the stage's final metrics and the recipe it actually used"),
    ("runs/<run>/<stage>/metrics.jsonl", "one JSON line per logged step or epoch (loss curves)"),
    ("runs/<run>/**/*.log, *.out, *.err", "logs written by the stage or the launcher"),
]


def _plot_description(name: str) -> str:
    stem = Path(name).stem
    if stem.endswith("_vs_budget"):
        return "metric against pre-training epochs (left) and GPU-hours (right), per row of the table"
    if stem.endswith("_ablation"):
        return "metric against the ablated value (mean ± 95% CI over seeds, Student t; x: paper value)"
    if stem.startswith("loss_"):
        return "one stage's loss of one kind per step: mean over seeds (band: lowest to highest seed)"
    return "plot"


MAX_LISTED_RUNS = 200


def _runs_table(states: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per run (``reports.page_runs.run_states``): identity, stages done, and what is missing or failed
    with the reason; with more than :data:`MAX_LISTED_RUNS` runs only the incomplete ones (at most that many)."""
    runs = sorted(states)
    if len(runs) > MAX_LISTED_RUNS:
        runs = [r for r in runs if not states[r]["complete"]]
    lines = []
    for run in runs[:MAX_LISTED_RUNS]:
        state = states[run]
        done = sorted(stage for stage, (status, _) in state["stages"].items() if status == "done")
        problems = [f"{stage}: {status} ({reason})" for stage, (status, reason) in state["stages"].items()
                    if status not in OK_STATUSES]
        identity = [cell_text(state[c]) for c in ("method", "backbone", "setting", "seed")]
        lines.append([run, *identity, ", ".join(done), "; ".join(problems)])
    headers = ["run", "method", "backbone", "setting", "seed", "stages done", "not counted"]
    table = tabulate(lines, headers=headers, tablefmt="github", disable_numparse=True, missingval="-")
    hidden = len(states) - len(lines)
    more = f"\n\n{hidden} more runs not listed (complete ones first): every run is in report.html and results.csv."
    return table + (more if hidden > 0 else "")


def _commits(manifests: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Distinct git commits (with a '-dirty' mark) recorded by the runs' manifests."""
    commits = set()
    for manifest in manifests.values():
        git = (manifest or {}).get("git")
        if isinstance(git, dict) and git.get("commit"):
            commits.add(str(git["commit"]) + ("-dirty" if git.get("dirty") else ""))
    return sorted(commits)


def write_index(
    bundle: Path,
    exp_dir: Path,
    results: pd.DataFrame,
    files: Sequence[Path],
    run_files: Sequence[Path],
    skipped: Sequence[str],
    command: str,
    manifests: Mapping[str, Mapping[str, Any] | None],
    states: Mapping[str, Mapping[str, Any]],
    full: bool = False,
) -> Path:
    """Write ``<bundle>/README.md`` and return its path; ``manifests``: run -> its manifest (None when
    unreadable); ``states``: ``reports.page_runs.run_states`` (a stage a run does not plan is not missing);
    ``full``: the run folders were copied."""
    n_complete = sum(bool(s["complete"]) for s in states.values())
    experiment = exp_dir.name
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for path in files:
        rel = path.relative_to(bundle).as_posix()
        what = _TABLE_FILES.get(rel) or (_plot_description(rel) if rel.startswith("plots/") else "")
        if rel.startswith("references/"):
            what = "reference numbers, recipes and noise floors, each with its source (from reports/references)"
        rows.append([f"`{rel}`", what, f"`{command}`"])
    for pattern, what in _RUN_FILES if full else []:
        rows.append([f"`{pattern}`", what, f"`mixmim-bench run {experiment}` (copied from {exp_dir})"])
    commits = _commits(manifests)
    sections = [
        f"# Review bundle: {experiment}",
        f"Generated {now} by `{command}` from `{exp_dir}`. The zip beside this folder holds the same files.",
        f"Runs: {len(states)} ({n_complete} complete, {len(states) - n_complete} with missing or failed stages); "
        + (f"{len(run_files)} run files copied. " if full else "run folders not copied (`--full-bundle` copies "
           "every config, result, metrics and log file). ")
        + f"Git commits of the runs: {', '.join(f'`{c}`' for c in commits) or 'not recorded'}.",
        "## Files\n\n" + tabulate(rows, headers=["file", "what it is", "produced by"], tablefmt="github"),
        "## Runs\n\n" + (_runs_table(states) if states else "No run directories found."),
    ]
    if skipped:
        listed = "\n".join(f"- `{s}`" for s in skipped[:MAX_LISTED_SKIPPED])
        more = len(skipped) - MAX_LISTED_SKIPPED
        sections.append(
            "## Not copied\n\nCheckpoints, TensorBoard folders and other files stay in the run "
            "directories:\n\n" + listed + (f"\n- ... and {more} more" if more > 0 else "")
        )
    path = bundle / "README.md"
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return path
