"""Read an experiment's run directories into one tidy pandas DataFrame (one row per run, stage and metric).

Layout read (``mixmim/runs/rundir.py``)::

    <exp_dir>/<run>/manifest.json          identity (method, backbone, setting, seed) + per-stage recipe
    <exp_dir>/<run>/config.yaml            identity fallback when the manifest is missing or unreadable
    <exp_dir>/<run>/<stage>/result.json    final metrics + the recipe actually used
    <exp_dir>/<run>/<stage>/metrics.jsonl  per-step log (loss curves; progress of an unfinished stage)

A run or stage that cannot be read never stops the report: it becomes a row with ``status`` ``missing``
(not finished) or ``failed`` (unreadable, not done, non-finite metric) and a ``reason``. Only rows with
status ``done`` and a finite value are ever aggregated. Folders starting with ``_`` or ``.`` (report
output, for instance) are not runs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mixmim.runs.rundir import CONFIG_FILE, MANIFEST_FILE, METRICS_FILE, RESULT_FILE, read_json

IDENTITY_COLUMNS = ["experiment", "run", "method", "backbone", "setting", "seed"]
RECIPE_COLUMNS = [
    "epochs",
    "effective_batch",
    "lr",
    "blr",
    "precision",
    "world_size",
    "gpu_hours",
    "images_per_s",
    "wall_time_s",
    "gflops",
    "engine",
    "epochs_planned",
    "truncated",
    "data_classes",
    "data_images",
    "data_fingerprint",
]
NUMERIC_COLUMNS = [
    "value",
    "epochs",
    "effective_batch",
    "lr",
    "blr",
    "world_size",
    "gpu_hours",
    "images_per_s",
    "wall_time_s",
    "gflops",
    "epochs_planned",
    "data_classes",
    "data_images",
]
NOT_PLANNED = "not_planned"  # status of a stage a table reads but the run never has (not in stages_planned)
NOT_PLANNED_REASON = "not a stage of this run"
# init: the run's ``init`` as its manifest records it (``run:<base>``: the encoder of run <base>-s<seed>)
RESULT_COLUMNS = [*IDENTITY_COLUMNS, "stage", "metric", "value", *RECIPE_COLUMNS, "status", "reason", "init"]
STAGE_NAMES = ("tokenizer", "pretrain", "finetune", "linprobe", "knn", "coco")
SETTING_PREFIX = "setting."
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STAGE_ORDER = {name: i for i, name in enumerate(STAGE_NAMES)}


def is_run_dir(path: Path) -> bool:
    """A run directory is a visible folder that is not a report output (``_*``) and not hidden."""
    return path.is_dir() and not path.name.startswith(("_", "."))


def setting_label(setting: dict[str, Any] | None) -> str:
    """``{'mask_ratio': 0.5}`` -> ``'mask_ratio=0.5'`` (keys sorted; empty -> ``''``)."""
    return ",".join(f"{k}={format_value(v)}" for k, v in sorted((setting or {}).items()))


def format_value(value: Any) -> str:
    """A setting value as text: booleans lower case (YAML style), everything else ``str``."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _read_identity(run_dir: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(identity, manifest, problem) of a run: the manifest first, ``config.yaml`` as the fallback."""
    problem = ""
    manifest: dict[str, Any] = {}
    try:
        manifest = read_json(os.path.join(run_dir, MANIFEST_FILE))
        if not isinstance(manifest, dict):
            raise ValueError(f"top level is {type(manifest).__name__}, not an object")
        if "method" in manifest and "seed" in manifest:
            return {k: manifest.get(k) for k in IDENTITY_COLUMNS}, manifest, ""
        problem = f"{MANIFEST_FILE} lacks method/seed"
    except FileNotFoundError:
        problem = f"no {MANIFEST_FILE}"
    except (OSError, ValueError) as err:
        problem = f"{MANIFEST_FILE} unreadable ({type(err).__name__}: {str(err)[:80]})"
        manifest = {}
    try:
        with open(os.path.join(run_dir, CONFIG_FILE), encoding="utf-8") as f:
            cfg = yaml.load(f, Loader=_YAML_LOADER) or {}
        identity = {
            "experiment": cfg.get("experiment"),
            "run": cfg.get("name"),
            "method": (cfg.get("method") or {}).get("name"),
            "backbone": (cfg.get("model") or {}).get("backbone"),
            "setting": cfg.get("setting") or {},
            "seed": cfg.get("seed"),
        }
        manifest.setdefault("config_stages", cfg.get("stages") or [])
        manifest.setdefault("init", cfg.get("init"))
        return identity, manifest, ""
    except FileNotFoundError:
        problem += f"; no {CONFIG_FILE}"
    except (OSError, yaml.YAMLError, AttributeError) as err:
        problem += f"; {CONFIG_FILE} unreadable ({type(err).__name__})"
    return {}, manifest, problem


def _stages_of(run_dir: str, manifest: dict[str, Any], expected: Iterable[str]) -> list[str]:
    """Stages to report for a run: planned (``manifest.stages_planned``, written by the launcher), recorded
    (``manifest.stages``), in the config, expected by the caller, and, without a plan, found on disk.

    With a plan the folder is not listed: a 10,000-run scan then costs one open per stage and no directory
    reads. A planned stage that never started is reported as missing.
    """
    names = set(expected) | set(manifest.get("stages") or {}) | set(manifest.get("config_stages") or [])
    planned = manifest.get("stages_planned")
    if isinstance(planned, list):
        names |= {str(stage) for stage in planned}
    else:
        names |= {name for name in os.listdir(run_dir) if name in _STAGE_ORDER}
    return sorted(names, key=lambda s: (_STAGE_ORDER.get(s, len(_STAGE_ORDER)), s))


def _recipe(result: dict[str, Any], manifest_stage: dict[str, Any]) -> dict[str, Any]:
    """The recipe actually used: ``result.json`` first, the manifest's stage entry as the fallback."""
    metrics = result.get("metrics") or {}
    out = {}
    for key in RECIPE_COLUMNS:
        value = result.get(key, manifest_stage.get(key))
        if value is None and key == "gflops":
            value = metrics.get("gflops")
        out[key] = value
    return out


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _stage_rows(run_dir: str, stage: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of a done stage, or one missing/failed row with the reason."""
    manifest_stage = (manifest.get("stages") or {}).get(stage) or {}
    try:
        result = read_json(os.path.join(run_dir, stage, RESULT_FILE))
    except FileNotFoundError:
        lines = _count_lines(os.path.join(run_dir, stage, METRICS_FILE))
        reason = (
            f"no {RESULT_FILE} (unfinished: {lines} lines in {METRICS_FILE})"
            if lines
            else (
                "no result.json (started, nothing logged)"
                if os.path.isdir(os.path.join(run_dir, stage))
                else "stage not started"
            )
        )
        return [{"stage": stage, "status": "missing", "reason": reason, **_recipe({}, manifest_stage)}]
    except (OSError, ValueError) as err:
        return [
            {
                "stage": stage,
                "status": "failed",
                "reason": f"{stage}/{RESULT_FILE} unreadable ({type(err).__name__})",
                **_recipe({}, manifest_stage),
            }
        ]
    recipe = _recipe(result if isinstance(result, dict) else {}, manifest_stage)
    if not isinstance(result, dict) or result.get("status", "done") != "done":
        status = result.get("status") if isinstance(result, dict) else type(result).__name__
        detail = result.get("reason") or result.get("error") if isinstance(result, dict) else None
        return [
            {
                "stage": stage,
                "status": "failed",
                "reason": f"status {status!r}" + (f": {detail}" if detail else ""),
                **recipe,
            }
        ]
    metrics = result.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return [{"stage": stage, "status": "failed", "reason": f"{stage}/{RESULT_FILE} has no metrics", **recipe}]
    rows = []
    for metric, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
            continue  # non-numeric extras (names, lists) are not table metrics
        finite = value is not None and math.isfinite(value)
        rows.append(
            {
                "stage": stage,
                "metric": metric,
                "value": float(value) if finite else math.nan,
                "status": "done" if finite else "failed",
                "reason": "" if finite else f"{metric} is not finite (NaN/inf written as null)",
                **recipe,
            }
        )
    return rows


def read_run(run_dir: str | Path, expected_stages: Iterable[str] = (),
             manifests: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """All rows of one run directory (never raises for a malformed run).

    Args:
        manifests: if given, the run's parsed ``manifest.json`` is added as ``manifests[<folder name>]`` when
            the identity came from it (unchanged, as read), so that later readers need not parse it again.
    """
    run_dir = os.fspath(run_dir)
    identity, manifest, problem = _read_identity(run_dir)
    name = os.path.basename(run_dir)
    if manifests is not None and "method" in manifest and "seed" in manifest:  # not the config.yaml fallback
        manifests[name] = manifest
    if not identity:
        return [{"run": name, "stage": None, "status": "failed", "reason": problem}]
    identity["run"] = name  # the folder name: unique, and where the run's files are (a copied manifest may lie)
    base = {**identity, "setting": setting_label(identity.get("setting")), "init": manifest.get("init")}
    base.update({f"{SETTING_PREFIX}{k}": v for k, v in (identity.get("setting") or {}).items()})
    rows = []
    planned = manifest.get("stages_planned")
    for stage in _stages_of(run_dir, manifest, expected_stages):
        if isinstance(planned, list) and stage not in planned and not os.path.isdir(os.path.join(run_dir, stage)):
            rows.append({**base, "stage": stage, "status": NOT_PLANNED, "reason": NOT_PLANNED_REASON})
            continue  # e.g. the random-init control has no pretrain stage: nothing is missing
        for row in _stage_rows(run_dir, stage, manifest):
            rows.append({**base, **row})
    return rows or [{**base, "stage": None, "status": "missing", "reason": "no stages found"}]


def recorded_datasets(exp_dir: str | Path, runs: Iterable[str]) -> set[str]:
    """The ``data.dataset`` values that ``runs`` (folder names in ``exp_dir``) recorded in their ``config.yaml``;
    a run without a readable config adds nothing."""
    found = set()
    for run in runs:
        try:
            with open(os.path.join(exp_dir, run, CONFIG_FILE), encoding="utf-8") as f:
                dataset = ((yaml.load(f, Loader=_YAML_LOADER) or {}).get("data") or {}).get("dataset")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if dataset:
            found.add(str(dataset))
    return found


def read_results(exp_dir: str | Path, expected_stages: Iterable[str] = (),
                 manifests: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Scan ``<exp_dir>/<run>/`` into a DataFrame with :data:`RESULT_COLUMNS` plus ``setting.*`` columns.

    Args:
        exp_dir: ``<output>/<experiment>``.
        expected_stages: stages the tables need; a run without them gets a ``missing`` row per stage.
        manifests: if given, filled with run -> parsed manifest (see :func:`read_run`), for
            ``reports.run_files.read_run_files`` (one parse per manifest, not two: 0.3 s less CPU for 10,000 runs).
    """
    exp_dir = Path(exp_dir)
    expected = tuple(expected_stages)
    records: list[dict[str, Any]] = []
    with os.scandir(exp_dir) as entries:
        run_dirs = sorted(e.path for e in entries if not e.name.startswith(("_", ".")) and e.is_dir())
    for run_dir in run_dirs:
        records.extend(read_run(run_dir, expected, manifests))
    df = pd.DataFrame.from_records(records)
    for column in RESULT_COLUMNS:
        if column not in df.columns:
            df[column] = None
    df["experiment"] = df["experiment"].fillna(exp_dir.name)
    for column in NUMERIC_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")  # integer, with <NA> for unreadable
    df["reason"] = df["reason"].fillna("")
    settings = sorted(c for c in df.columns if c.startswith(SETTING_PREFIX))
    for column in settings:  # keep values as written (600, not 600.0 when some runs lack the setting)
        df[column] = pd.Series([r.get(column) for r in records], index=df.index, dtype=object)
    return df[[*RESULT_COLUMNS, *settings]]


def read_curves(
    exp_dir: str | Path,
    stage: str = "pretrain",
    metric: str = "loss",
    identities: Mapping[str, tuple[Any, Any, str, Any]] | None = None,
) -> pd.DataFrame:
    """Per-step values of ``metric`` from every run's ``<stage>/metrics.jsonl``.

    Args:
        identities: run -> (method, backbone, setting label, seed) of the runs to read, as
            :func:`read_results` found them (e.g. :func:`run_identities`); default every run folder, each
            identity read again from its manifest.

    Returns columns run, method, backbone, setting, seed, step (``step`` if logged, else ``epoch``,
    else the line index), value. Truncated lines are skipped (``mixmim.runs.rundir.read_jsonl`` semantics).
    """
    exp_dir = Path(exp_dir)
    runs = sorted(identities) if identities is not None else sorted(p.name for p in exp_dir.iterdir() if is_run_dir(p))
    base = os.fspath(exp_dir)
    key = f'"{metric}"'  # most lines of a real log are other records (epoch summaries, events)
    rows: list[tuple] = []  # one DataFrame at the end (one per run took 30 s for 10,000 runs on 2 cores)
    for run in runs:
        try:
            with open(os.path.join(base, run, stage, METRICS_FILE), encoding="utf-8") as f:  # not Path: 3x cheaper
                lines = f.readlines()
        except OSError:
            continue
        points = []
        for i, record in _records(lines, key):
            value = record.get(metric) if isinstance(record, dict) else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                points.append((record.get("step", record.get("epoch", i)), float(value)))
        if points:
            if identities is not None:
                ident = (run, *identities[run])
            else:
                identity, _, _ = _read_identity(str(exp_dir / run))
                label = setting_label(identity.get("setting"))
                ident = (run, identity.get("method"), identity.get("backbone"), label, identity.get("seed"))
            rows.extend((*ident, step, value) for step, value in points)
    columns = ["run", "method", "backbone", "setting", "seed", "step", "value"]
    return pd.DataFrame(rows, columns=columns)


def _records(lines: list[str], key: str) -> list[tuple[int, Any]]:
    """(line index, parsed record) of the lines that mention ``key``: one JSON parse for all of them, line by
    line only when some line is truncated (skipped, as ``mixmim.runs.rundir.read_jsonl`` does)."""
    wanted = [(i, line) for i, line in enumerate(lines) if key in line]
    try:
        return list(zip([i for i, _ in wanted], json.loads("[" + ",".join(line for _, line in wanted) + "]")))
    except json.JSONDecodeError:
        out = []
        for i, line in wanted:
            try:
                out.append((i, json.loads(line)))
            except json.JSONDecodeError:
                continue
        return out


def run_identities(results: pd.DataFrame) -> dict[str, tuple[Any, Any, str, Any]]:
    """run -> (method, backbone, setting label, seed) of every run of a :func:`read_results` frame that has
    an identity (the unreadable ones cannot be placed on a curve)."""
    known = results[results["method"].notna()].drop_duplicates("run")
    return {str(r[0]): tuple(r[1:]) for r in known[["run", "method", "backbone", "setting", "seed"]].itertuples(
        index=False)}


def plain_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """``frame[columns].to_dict("records")`` (plain Python values, <NA> as None) without boxing cell by cell:
    4x faster for a 50,000-row results frame."""
    lists = []
    for column in columns:
        values = frame[column].tolist()
        if isinstance(frame[column].dtype, pd.api.extensions.ExtensionDtype):  # Int64: <NA> for a missing value
            values = [None if v is pd.NA else v for v in values]
        lists.append(values)
    return [dict(zip(columns, row)) for row in zip(*lists)] if lists else [{} for _ in range(len(frame))]
