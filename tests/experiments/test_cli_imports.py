"""Cheap paths stay cheap: the CLI commands that need no model, ``import reports`` and ``import slurm`` never
import torch, and ``import mixmim`` still makes the backbones known to timm.

Each check runs in a fresh interpreter (the test process has torch loaded already). The paths run one after
the other in one process, and the first that loads torch is named, so one subprocess covers them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TORCH_FREE = textwrap.dedent("""
    import contextlib, io, sys

    def check(label, fn):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = fn()
            except SystemExit as exit:
                code = exit.code
        if code not in (None, 0):
            sys.exit(f"{label}: exit {code}: {out.getvalue()[-2000:]}")
        loaded = [m for m in ("torch", "timm", "torchvision") if m in sys.modules]
        if loaded:
            sys.exit(f"{label} imported {loaded}")
        print(f"ok {label}")

    output = sys.argv[1]
    check("import mixmim", lambda: __import__("mixmim") and 0)
    check("import reports", lambda: __import__("reports") and 0)
    check("import slurm", lambda: __import__("slurm") and 0)
    check("import mixmim.weights.init_source", lambda: __import__("mixmim.weights.init_source") and 0)
    from experiments.cli import main
    check("--help", lambda: main(["--help"]))
    for command in ("show", "run", "status", "report", "speed", "bench", "models"):
        check(f"{command} --help", lambda: main([command, "--help"]))
    check("list", lambda: main(["list"]))
    for name in ("smoke", "imagenet-main", "fixed-encoder", "coco", "transfer-classification"):
        check(f"show {name}", lambda: main(["show", name]))
    check("show --only", lambda: main(["show", "smoke", "--only", "mixmim-*"]))
    check("show smoke --cost", lambda: main(["show", "smoke", "--cost"]))
    for name in ("imagenet-main", "fixed-encoder"):  # bench row or FLOP table: no model is built
        check(f"show {name} --cost", lambda: main(["show", name, "--cost", "--gpu", "A100", "--output", output]))
    check("run --dry-run", lambda: main(["run", "smoke", "--variant", "debug", "--dry-run", "--output", output]))
    check("status", lambda: main(["status", "smoke", "--output", output]))
    check("report", lambda: main(["report", "smoke", "--output", output]))
    check("speed", lambda: main(["speed", "--output", output]))
""")


def _bench_row(method: str = "mixmim", backbone: str = "mixmim_tiny_32") -> dict:
    return {"kind": "step", "method": method, "backbone": backbone, "device": "cuda", "device_name": "NVIDIA A100-SXM4",
            "precision": "fp16", "img_size": 224, "images_per_s": 1000.0, "default_path": True, "time": "2026"}


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_model_free_paths_never_import_torch(tmp_path: Path) -> None:
    from synthetic_runs import stage_result, write_run

    exp_dir = tmp_path / "smoke"
    for method in ("mixmim", "mae"):  # a finished run per method, for `report`
        write_run(exp_dir, f"{method}-mixmim_tiny_32-s0", method=method, backbone="mixmim_tiny_32", seed=0,
                  results={s: stage_result({"top1": 80.0, "loss": 0.5}, 1, 64, 1e-3) for s in
                           ("pretrain", "linprobe", "knn", "finetune")})
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "20260101-000000-cuda.jsonl").write_text(json.dumps(_bench_row()) + "\n")
    proc = _run(TORCH_FREE, str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ok speed" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("order", ["import mixmim, timm", "import timm, mixmim", "import mixmim.backbones, timm"])
def test_import_mixmim_registers_the_backbones_in_timm(order: str) -> None:
    code = f"{order}\nmodel = timm.create_model('mixmim_tiny_32', num_classes=3)\nprint(type(model).__name__)"
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "MixMIMTransformer"
