"""Synthetic run directories in the ``mixmim.runs.rundir`` format: fixtures of the report's tests, and the runs that
the report benchmarks (``scripts/bench_report.py``, ``scripts/bench_cli.py``) read.

No model is trained: each run gets a manifest, a small ``config.yaml`` and per-stage ``result.json`` /
``metrics.jsonl`` files with numbers drawn from a seeded generator. Test-only code: it lives in ``tests/``
(on the tests' import path through ``tests/conftest.py``; the scripts add ``tests/`` to theirs).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mixmim.runs.rundir import (
    CONFIG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    RESULT_FILE,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
)

RECIPE_KEYS = ("epochs", "effective_batch", "lr", "blr", "precision", "world_size", "wall_time_s", "gpu_hours")


def _write_json(path: Path, obj: Any, atomic: bool) -> None:
    if atomic:
        atomic_write_json(path, obj)
    else:  # same bytes as atomic_write_json, without the fsync (fast bulk synthesis)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_run(
    exp_dir: str | Path,
    run: str,
    *,
    method: str,
    backbone: str,
    seed: int,
    results: Mapping[str, Mapping[str, Any] | None],
    setting: Mapping[str, Any] | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
    atomic: bool = True,
) -> Path:
    """Write ``<exp_dir>/<run>/`` like the stages do and return it.

    Args:
        results: stage -> the ``result.json`` body (``status``, ``metrics``, recipe fields); None writes
            the stage folder without a result (an unfinished stage).
        curves: stage -> loss per step, written to ``<stage>/metrics.jsonl``.
        atomic: write through ``mixmim.runs.rundir`` (fsync + rename); False for fast bulk synthesis.
    """
    exp_dir = Path(exp_dir)
    run_dir = exp_dir / run
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        "experiment": exp_dir.name,
        "run": run,
        "method": method,
        "backbone": backbone,
        "setting": dict(setting or {}),
        "seed": seed,
    }
    planned = list(results) + [s for s in (curves or {}) if s not in results]
    stages = {stage: {k: body[k] for k in RECIPE_KEYS if k in body} for stage, body in results.items() if body}
    manifest = {
        **identity,
        "stages_planned": planned,  # what experiments.launching writes before any stage runs
        "git": {"commit": "0" * 40, "dirty": False},
        "versions": {"python": "3.11", "torch": "synthetic"},
        "hardware": "synthetic",
        "stages": stages,
    }
    _write_json(run_dir / MANIFEST_FILE, manifest, atomic)
    config = {
        "experiment": exp_dir.name,
        "name": run,
        "seed": seed,
        "stages": list(results),
        "setting": dict(setting or {}),
        "model": {"backbone": backbone},
        "method": {"name": method},
    }
    config_text = yaml.safe_dump(config, sort_keys=False)
    if atomic:
        atomic_write_text(run_dir / CONFIG_FILE, config_text)
    else:
        (run_dir / CONFIG_FILE).write_text(config_text, encoding="utf-8")
    for stage, body in results.items():
        (run_dir / stage).mkdir(exist_ok=True)
        if body is not None:
            _write_json(run_dir / stage / RESULT_FILE, {"stage": stage, **body}, atomic)
    for stage, losses in (curves or {}).items():
        lines = [{"epoch": i, "step": i, "loss": loss} for i, loss in enumerate(losses)]
        if atomic:
            for line in lines:
                append_jsonl(run_dir / stage / METRICS_FILE, line)
        else:
            text = "".join(json.dumps(line) + "\n" for line in lines)
            (run_dir / stage / METRICS_FILE).write_text(text, encoding="utf-8")
    return run_dir


def stage_result(
    metrics: Mapping[str, float],
    epochs: int,
    effective_batch: int,
    lr: float,
    precision: str = "fp32",
    gpu_hours: float = 0.01,
    images_per_s: float = 100.0,
    **extra: Any,
) -> dict[str, Any]:
    """A ``result.json`` body with the recipe fields the architecture lists."""
    return {
        "status": "done",
        "metrics": dict(metrics),
        "epochs": epochs,
        "steps": epochs * 10,
        "effective_batch": effective_batch,
        "lr": lr,
        "blr": lr * 256 / effective_batch,
        "precision": precision,
        "world_size": 1,
        "wall_time_s": gpu_hours * 3600.0,
        "gpu_hours": gpu_hours,
        "images_per_s": images_per_s,
        **extra,
    }


def synthetic_experiment(exp_dir: str | Path, n_runs: int, seed: int = 0, atomic: bool = False) -> list[Path]:
    """``n_runs`` runs: 4 methods x 5 mask ratios x seeds, stages pretrain, linprobe, knn, finetune.

    Numbers are random but plausible (top-1 around 80); every 97th run lacks its fine-tune result.
    """
    rng = random.Random(seed)
    methods = ("mixmim", "mae", "simmim", "beit")
    ratios = (0.25, 0.4, 0.5, 0.6, 0.75)
    paths = []
    for i in range(n_runs):
        method, ratio, run_seed = methods[i % 4], ratios[(i // 4) % 5], i // 20
        epochs = (100, 300, 600)[run_seed % 3]
        base = 80.0 + methods.index(method) - abs(ratio - 0.5) * 4 + epochs / 300
        results: dict[str, dict[str, Any] | None] = {
            "pretrain": stage_result(
                {"loss": 0.4 + rng.random() * 0.05},
                epochs,
                2048,
                1.2e-3,
                "bf16",
                gpu_hours=epochs * 0.5,
                images_per_s=1500 + rng.random() * 100,
                gflops=16.3,
            ),
            "linprobe": stage_result({"top1": base - 12 + rng.gauss(0, 0.3)}, 90, 16384, 6.4, "bf16"),
            "knn": stage_result({"top1": base - 20 + rng.gauss(0, 0.3)}, 0, 256, 0.0, "fp32"),
            "finetune": None
            if i % 97 == 96
            else stage_result({"top1": base + rng.gauss(0, 0.1), "top5": 97.0}, 100, 1024, 2e-3, "bf16", gpu_hours=40),
        }
        curve = [2.0 * 0.9**k + 0.4 for k in range(0, 20)]
        paths.append(
            write_run(
                exp_dir,
                f"{method}-r{ratio}-s{run_seed}",
                method=method,
                backbone="mixmim_b",
                seed=run_seed,
                setting={"mask_ratio": ratio},
                results=results,
                curves={"pretrain": curve},
                atomic=atomic,
            )
        )
    return paths
