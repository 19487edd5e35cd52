"""The files of a run a reviewer reads beside the tables: manifest, resolved config, and log tails.

One read per file and run (two opens for 10,000 runs take about 0.2 s of CPU), and no second parse of a
manifest the results reader already parsed; a file that is missing or unreadable is None, never an error:
the results reader already reports why such a run is not counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixmim.runs.rundir import CONFIG_FILE, MANIFEST_FILE

LOG_SUFFIXES = (".log", ".out", ".err")
LOGS_DIR = "_logs"  # <exp_dir>/_logs/<run>/<stage>.log: the local executor's and Slurm's stage logs
TAIL_LINES = 40
TAIL_BYTES = 6000


@dataclass(frozen=True)
class RunFiles:
    """A run's manifest (parsed; None when missing or not a JSON object) and config (text; None when missing)."""

    run: str
    manifest: dict[str, Any] | None
    config_text: str | None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_run_files(exp_dir: Path, runs: Iterable[str],
                   manifests: Mapping[str, dict[str, Any]] | None = None) -> dict[str, RunFiles]:
    """run -> :class:`RunFiles` for each of ``runs`` (folder names under ``exp_dir``).

    ``manifests``: run -> manifest already parsed (``reports.results.read_results(..., manifests=...)``); the
    other runs' manifests are read here.
    """
    out = {}
    base = os.fspath(exp_dir)  # str paths: cheaper than building a Path per file, 10,000 times
    for run in runs:
        config_text = _read_text(os.path.join(base, run, CONFIG_FILE))
        if manifests is not None and run in manifests:
            out[run] = RunFiles(run, manifests[run], config_text)
            continue
        text = _read_text(os.path.join(base, run, MANIFEST_FILE))
        try:
            manifest = json.loads(text) if text is not None else None
        except ValueError:
            manifest = None
        manifest = manifest if isinstance(manifest, dict) else None
        out[run] = RunFiles(run, manifest, config_text)
    return out


def stage_logs(exp_dir: Path, run: str, stage: str) -> list[Path]:
    """The log files of one stage: ``<run>/<stage>/*.{log,out,err}`` and ``_logs/<run>/<stage>*``."""
    found = []
    for folder, pattern in ((exp_dir / run / stage, "*"), (exp_dir / LOGS_DIR / run, f"{stage}*")):
        if folder.is_dir():
            found += sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix in LOG_SUFFIXES)
    return found


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last ``lines`` lines of a text file (at most ``max_bytes`` read from its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError as err:
        return f"(unreadable: {err})"
    return "\n".join(data.splitlines()[-lines:])
