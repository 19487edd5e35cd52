"""The run directory: where every stage writes, and how (atomically, never overwriting a result).

Layout (``docs/architecture.md``, "Run directory")::

    <output>/<experiment>/<run>/
        config.yaml            fully resolved RunConfig
        manifest.json          run identity + versions + one entry per stage (batch, lr, precision, ...)
        <stage>/               pretrain | finetune | linprobe | knn | coco | tokenizer
            metrics.jsonl      one JSON object per logged step/epoch
            checkpoint-last.pth, checkpoint-<epoch>.pth
            result.json        the stage's final metrics; its presence means "done"
            tb/                TensorBoard events

This module knows nothing of models; ``slurm`` and ``reports`` use it too.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


class ResultExistsError(FileExistsError):
    """A stage result already exists and would be overwritten."""


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    """``<run_dir>/<stage>``, created if missing."""
    path = Path(run_dir) / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_done(run_dir: str | Path, stage: str) -> bool:
    """A stage is done when its ``result.json`` exists."""
    return (Path(run_dir) / stage / RESULT_FILE).is_file()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _sanitize(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    return value


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader (or a run killed mid-write) sees either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_sanitize(obj), indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_result(run_dir: str | Path, stage: str, result: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``<run_dir>/<stage>/result.json`` atomically.

    Raises:
        ResultExistsError: the result exists and ``overwrite`` is False (results are never replaced
            silently; delete the file or pass ``overwrite=True`` to redo a stage).
    """
    path = stage_dir(run_dir, stage) / RESULT_FILE
    if path.exists() and not overwrite:
        raise ResultExistsError(f"{path} exists; delete it to run stage '{stage}' again")
    atomic_write_json(path, {"stage": stage, **result})
    return path


def read_result(run_dir: str | Path, stage: str) -> dict[str, Any] | None:
    path = Path(run_dir) / stage / RESULT_FILE
    return read_json(path) if path.is_file() else None


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a crash can at worst leave a truncated last line, which readers skip)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_sanitize(record), default=_json_default) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All complete JSON lines of a file; a truncated or corrupt line is skipped."""
    records = []
    if not Path(path).is_file():
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def update_manifest(run_dir: str | Path, fields: dict[str, Any], stage: str | None = None) -> dict[str, Any]:
    """Merge ``fields`` into ``manifest.json`` (under ``stages.<stage>`` when a stage is given).

    Stages of one run execute one after another, so read-modify-write with an atomic rename is safe.
    """
    path = Path(run_dir) / MANIFEST_FILE
    manifest: dict[str, Any] = read_json(path) if path.is_file() else {}
    if stage is None:
        manifest.update(fields)
    else:
        manifest.setdefault("stages", {}).setdefault(stage, {}).update(fields)
    atomic_write_json(path, manifest)
    return manifest
