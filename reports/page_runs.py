"""The review page's run sections: an overview grouped by method / backbone / setting, and per run its
stages, recipe, manifest, resolved config and the log tails of failed stages.

A stage a run never plans (the random-init control's pre-training) is ``not planned``, never a problem. With
more than :data:`MAX_DETAILED_RUNS` runs, the runs with problems come first and the rest are counted, not
printed: every config and manifest is in the bundle's ``runs/`` files either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reports.page_html import cell_text, details, esc, pre, table
from reports.results import NOT_PLANNED, plain_records
from reports.run_files import RunFiles, stage_logs, tail

MAX_DETAILED_RUNS = 40
OK_STATUSES = ("done", NOT_PLANNED)
_RECIPE_KEYS = ("epochs", "effective_batch", "lr", "blr", "precision", "world_size", "gpu_hours", "wall_time_s")


def run_states(results: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """run -> {identity, stages: {stage: (status, reason)}, complete} in one pass over plain records."""
    out: dict[str, dict[str, Any]] = {}
    columns = ["run", "method", "backbone", "setting", "seed", "stage", "status", "reason"]
    for r in plain_records(results, columns):
        run = str(r["run"])
        state = out.setdefault(run, {"method": r["method"], "backbone": r["backbone"], "setting": r["setting"],
                                     "seed": r["seed"], "stages": {}, "complete": True})
        stage = r["stage"] if isinstance(r["stage"], str) else "run"
        if stage not in state["stages"] or r["status"] not in OK_STATUSES:
            state["stages"][stage] = (r["status"], r["reason"])
        if r["status"] not in OK_STATUSES:
            state["complete"] = False
    return out


def _group_key(state: Mapping[str, Any]) -> tuple[str, str, str]:
    return tuple(cell_text(state[k]) if cell_text(state[k]) != "" else "-" for k in ("method", "backbone", "setting"))


def overview(states: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per method / backbone / setting: runs, seeds, complete, and the first problems."""
    groups: dict[tuple[str, str, str], list[tuple[str, Mapping[str, Any]]]] = {}
    for run, state in states.items():
        groups.setdefault(_group_key(state), []).append((run, state))
    rows = []
    for (method, backbone, setting), members in sorted(groups.items()):
        problems = [f"{run} {stage}: {status} ({reason})" for run, s in members
                    for stage, (status, reason) in s["stages"].items() if status not in OK_STATUSES]
        seeds = sorted({int(s["seed"]) for _, s in members if cell_text(s["seed"]) != "-"})
        not_planned = sorted({stage for _, s in members for stage, (status, _) in s["stages"].items()
                              if status == NOT_PLANNED})
        rows.append({
            "method": method, "backbone": backbone, "setting": setting, "runs": len(members),
            "seeds": _ranges(seeds), "complete": sum(bool(s["complete"]) for _, s in members),
            "not planned (by design)": ", ".join(not_planned),
            "problems": "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""),
        })
    return table(rows, numeric=("runs", "complete"),
                 caption="complete: every planned stage done; a stage a run does not plan (the random-init "
                         "control's pre-training) is not a problem. Every stage's status and reason: results.csv.")


def _ranges(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2, 5'``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def _stage_tags(stages: Mapping[str, tuple[str, str]]) -> str:
    tags = []
    for stage, (status, reason) in stages.items():
        cls = "done" if status in OK_STATUSES else status
        text = "not planned" if status == NOT_PLANNED else status
        tags.append(f'<span class="tag {esc(cls)}" title="{esc(reason or text)}">{esc(stage)}: {esc(text)}</span>')
    return " ".join(tags)


def _recipe_rows(run: str, files: RunFiles | None, recipes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run's rows of the experiment's recipe table, else the recipe each stage recorded in the manifest."""
    mine = [dict(r) for r in recipes if r.get("run") == run]
    if mine:
        return mine
    stages = ((files.manifest or {}).get("stages") or {}) if files else {}
    return [{"stage": stage, **{k: entry.get(k) for k in _RECIPE_KEYS}} for stage, entry in stages.items()
            if isinstance(entry, dict)]


def run_section(exp_dir: Path, run: str, state: Mapping[str, Any], files: RunFiles | None,
                recipes: Sequence[Mapping[str, Any]], recipe_note: str = "") -> str:
    """One run: stage states, recipe table, failed stages' log tails (open), manifest and config (collapsed)."""
    parts = [f'<section class="run" id="run-{esc(run)}"><h3>{esc(run)}</h3>', f"<p>{_stage_tags(state['stages'])}</p>"]
    for stage, (status, reason) in state["stages"].items():
        if status in OK_STATUSES or stage == "run":
            continue
        logs = stage_logs(exp_dir, run, stage)
        body = "".join(f"<p class='note'>{esc(str(p.relative_to(exp_dir)))} (last lines)</p>{pre(tail(p))}"
                       for p in logs) or "<p class='muted'>no log file found for this stage</p>"
        parts.append(details(f"{stage}: {status} ({reason}): log tail", body, open_=True))
    recipe = _recipe_rows(run, files, recipes)
    parts.append(details("recipe per stage", table(recipe, caption=recipe_note)))
    manifest = files.manifest if files else None
    parts.append(details("manifest.json", pre(json.dumps(manifest, indent=2, sort_keys=True)) if manifest
                         else "<p class='muted'>no readable manifest.json</p>"))
    parts.append(details("config.yaml (resolved)", pre(files.config_text) if files and files.config_text
                         else "<p class='muted'>no config.yaml</p>"))
    parts.append("</section>")
    return "".join(parts)


def runs_section(exp_dir: Path, states: Mapping[str, Mapping[str, Any]], files: Mapping[str, RunFiles],
                 recipes: Sequence[Mapping[str, Any]], recipe_note: str = "") -> str:
    """The overview, then per-run detail: every run, or the first :data:`MAX_DETAILED_RUNS` (problems first)."""
    order = sorted(states, key=lambda r: (bool(states[r]["complete"]), r))
    shown = order[:MAX_DETAILED_RUNS]
    parts = [overview(states)]
    if len(order) > len(shown):
        parts.append(f"<p class='note'>Per-run detail for {len(shown)} of {len(order)} runs (those with problems "
                     "first). Every run's config and manifest are in <code>runs/configs.yaml</code> and "
                     "<code>runs/manifests.json</code>; every stage's status in <code>results.csv</code>.</p>")
    parts += [run_section(exp_dir, run, states[run], files.get(run), recipes, recipe_note) for run in shown]
    return "".join(parts)
