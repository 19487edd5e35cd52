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
        .run.lock              the run's lock (:class:`RunLock`): held by the process working on the run

Every file is written atomically (a temporary file unique to its writer, then a rename) with the mode the
umask gives (0644 under the usual 022). This module knows nothing of models and imports no torch;
``slurm`` and ``reports`` use it too.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# Re-exported: slurm/ and reports/ import only this module of mixmim.
from mixmim.runs.runlock import RunLock, RunLockError, file_lock, lock_holder  # noqa: F401
from mixmim.runs.runlock import describe as describe_holder  # noqa: F401

RESULT_FILE = "result.json"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
ENCODER_FILE = "encoder.pth"  # <run>/pretrain/<this>: the pre-trained encoder, what ``init=pretrain`` loads
PREVIOUS_CONFIG_FILE = "config.previous.yaml"  # the config a folder held before a change (no result yet, or forced)
LAUNCH_POSITION_ENV = "MIXMIM_LAUNCH_POSITION"  # "3/5": a run's place in its launch, for progress lines


class ResultExistsError(FileExistsError):
    """A stage result already exists and would be overwritten."""


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    """``<run_dir>/<stage>``, created if missing."""
    path = Path(run_dir) / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


SIBLING_INIT = "run:"  # init=run:<base>: the pre-trained encoder of run <base> (same experiment folder and seed)


def sibling_encoder(init: str, run_dir: str | Path, seed: int) -> Path:
    """``init=run:<base>`` -> ``<run_dir>/../<base>-s<seed>/pretrain/encoder.pth``: the encoder another run of the
    same experiment folder pre-trained with the same seed (fixed-encoder's ``own`` fine-tuning protocol reuses
    the ``shared`` protocol's pre-training this way)."""
    base = init.removeprefix(SIBLING_INIT)
    if not base or "/" in base or base in (".", ".."):
        raise ValueError(f"init={init!r}: write run:<run name without its -s<seed> suffix>, a run of the same "
                         "experiment folder")
    return Path(run_dir).parent / f"{base}-s{seed}" / "pretrain" / ENCODER_FILE


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


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], overwrite: bool = True) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it into place.

    A reader (or a run killed mid-write) sees the old file or the new one, never half of one. The temporary
    name holds the writer's PID and a random part, so concurrent writers never touch each other's file; the
    file gets the mode a plain ``open`` would give (``0o666`` less the umask), and the rename is fsync'ed.

    Args:
        overwrite: False: never replace an existing ``path`` (a hard link that fails when the name exists,
            so two writers cannot both succeed).

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _link_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless that name exists (atomic where hard links work)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem: check, then rename (racy, but never silent)
        if path.exists():
            raise FileExistsError(f"{path} exists") from None
        os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems refuse to fsync a directory)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_text(obj: Any) -> str:
    return json.dumps(_sanitize(obj), indent=2, sort_keys=True, default=_json_default) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, _json_text(obj))


def read_json(path: str | Path) -> Any:
    """The parsed JSON file (strict UTF-8, as a text-mode read). Read as bytes and decoded at once: 25% less
    CPU than a text-mode ``json.load`` for the small files a report reads by the 10,000 (``reports.results``).

    Raises:
        OSError: unreadable; ValueError: not UTF-8 (UnicodeDecodeError) or not JSON (JSONDecodeError).
    """
    with open(path, "rb", buffering=0) as f:
        return json.loads(f.read().decode("utf-8"))


def is_truncated(result: dict[str, Any]) -> bool:
    """Whether a stage stopped before its planned schedule (``max_steps`` or a budget below it): the epochs it
    ran (``epochs``) fall short of ``epochs_planned``. Such a result is marked ``"truncated": true``."""
    done, planned = result.get("epochs"), result.get("epochs_planned")
    if not isinstance(done, (int, float)) or not isinstance(planned, (int, float)) or not planned:
        return bool(result.get("truncated", False))
    return done < planned * (1 - 1e-9)


def write_result(run_dir: str | Path, stage: str, result: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``<run_dir>/<stage>/result.json`` atomically; a stage cut short of its schedule is marked
    ``"truncated": true`` (:func:`is_truncated`).

    Raises:
        ResultExistsError: the result exists and ``overwrite`` is False (results are never replaced
            silently; delete the file or pass ``overwrite=True`` to redo a stage).
    """
    path = stage_dir(run_dir, stage) / RESULT_FILE
    if is_truncated(result):
        result = {**result, "truncated": True}
    text = _json_text({"stage": stage, **result}).encode("utf-8")
    try:
        atomic_write(path, lambda f: f.write(text), overwrite=overwrite)
    except FileExistsError:
        raise ResultExistsError(f"{path} exists; delete it to run stage '{stage}' again") from None
    return path


def done_stages(run_dir: str | Path) -> list[str]:
    """The stages of ``run_dir`` that have a result, sorted."""
    root = Path(run_dir)
    return sorted(p.parent.name for p in root.glob(f"*/{RESULT_FILE}")) if root.is_dir() else []


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

    The read-modify-write holds an exclusive lock on the manifest (:func:`file_lock`), so concurrent updates
    (a launcher and its stages, several ranks, another launch) are never lost.
    """
    path = Path(run_dir) / MANIFEST_FILE
    with file_lock(path):
        manifest: dict[str, Any] = read_json(path) if path.is_file() else {}
        if stage is None:
            manifest.update(fields)
        else:
            manifest.setdefault("stages", {}).setdefault(stage, {}).update(fields)
        atomic_write_json(path, manifest)
    return manifest


def append_to_manifest(run_dir: str | Path, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Append ``entry`` to the list ``manifest[key]`` (under the manifest's lock)."""
    path = Path(run_dir) / MANIFEST_FILE
    with file_lock(path):
        manifest: dict[str, Any] = read_json(path) if path.is_file() else {}
        manifest.setdefault(key, []).append(entry)
        atomic_write_json(path, manifest)
    return manifest
