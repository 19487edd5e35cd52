"""``scripts/gpu-check``: its help, its stop without CUDA, its plan (validated by the CLI's dry run) and the
report assembled from rows (the GPU steps themselves run only on a GPU machine)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.cli import build_parser, main

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"


def _load():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("gpu_check", loader))
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


gpu_check = _load()


def test_help_explains_the_check():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for words in ("OUT_DIR", "report.md", "rows.jsonl", "--budget-s", "docs/performance.md", "exit status 2"):
        assert words in out.stdout.replace("\n", " ") or words in out.stdout, words


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_without_cuda_it_stops_at_once_with_status_2(tmp_path):
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 2 and "no CUDA device" in out.stderr
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - start < 30


def test_plan_prints_the_steps_without_a_gpu(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out"), "--only", "smoke", "--plan"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "smoke-decode-gpu (limit 60 s): " in out.stdout and "--set data.decode=gpu" in out.stdout
    assert "4 steps, 360 s of limits within --budget-s 470" in out.stdout
    assert not (tmp_path / "out").exists()


def test_the_plan_fits_the_budget_and_the_cli_accepts_its_runs(tmp_path, capsys):
    args = gpu_check.parse_args([str(tmp_path / "out")])
    steps = gpu_check.plan(args, tmp_path / "work")
    assert [s.name for s in steps] == ["tests", "bench-compile", "bench-attention", "data"]
    assert sum(s.limit_s for s in steps) <= args.budget_s < 480
    for step in steps[1:]:  # the bench flags exist (a CPU cannot run them)
        bench = build_parser().parse_args(step.argv[3:])
        assert (bench.command, bench.device, bench.precision, bench.img_size) == ("bench", "cuda", "bf16", 224)
        assert bench.backbone == "mixmim_base"
    compiled, attention, data = (build_parser().parse_args(s.argv[3:]) for s in steps[1:])
    assert compiled.compile and compiled.methods == ["mixmim", "simmim", "mae", "beit"] and compiled.batch_size == 128
    assert attention.attention == ["grouped", "sdpa", "official"] and attention.batch_size == 128
    assert data.data.endswith("jpegs") and data.workers == 8 and data.data_batch_size == 128

    smoke_args = gpu_check.parse_args([str(tmp_path / "out"), "--only", "smoke"])
    smoke_steps = gpu_check.plan(smoke_args, tmp_path / "w")
    assert [s.name for s in smoke_steps] == ["smoke-bf16", "smoke-fp16", "smoke-decode-cpu", "smoke-decode-gpu"]
    assert sum(s.limit_s for s in smoke_steps) <= smoke_args.budget_s
    smoke = smoke_steps[1]
    assert smoke.argv[1:4] == ["-m", "experiments.cli", "run"]
    assert main([*smoke.argv[3:], "--dry-run"]) == 0  # the experiment, the --only patterns, every --set value
    plan = capsys.readouterr().out
    assert all(f"{m}-mixmim_base-encoderMixMIM-B-s0" in plan for m in ("mixmim", "mae", "simmim", "beit"))
    assert "fixed-encoder" in plan and "vit_base" not in plan
    assert "method.vocab_size=128" in smoke.argv  # BEiT's tokenizer fit stays short
    decode = smoke_steps[3]  # MixMIM-B at the bench batch on the JPEGs, decoded on the GPU in the step
    assert decode.jpegs == tmp_path / "w" / "jpegs" and decode.labels == {"precision": "bf16", "decode": "gpu"}
    gpu_check.write_jpegs(decode.jpegs, 2)  # the check writes them before the step; the dry run checks the root
    assert main([*decode.argv[3:], "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "mixmim-mixmim_base-encoderMixMIM-B-s0" in plan and "mae-" not in plan
    for value in ("data.decode=gpu", "data.dataset=folder", "pretrain.batch_size=128", "pretrain.precision=bf16"):
        assert value in decode.argv, value


def test_bench_compile_benchmarks_every_method_card(tmp_path, monkeypatch):
    """A fifth card joins bench-compile (after the shipped four, in their order) with its share of the limit."""
    monkeypatch.setattr(gpu_check, "CARDS", {**gpu_check.CARDS, "toy": object()})
    step = gpu_check.plan(gpu_check.parse_args([str(tmp_path / "out"), "--only", "bench"]), tmp_path / "w")[0]
    assert step.name == "bench-compile"
    assert step.argv[step.argv.index("--methods") + 1] == "mixmim,simmim,mae,beit,toy"
    assert step.limit_s == 5 * gpu_check.BENCH_COMPILE_S_PER_METHOD


def test_the_data_step_reads_synthetic_jpegs_on_both_decode_paths(tmp_path):
    gpu_check.write_jpegs(tmp_path / "jpegs", 3)
    files = sorted((tmp_path / "jpegs" / "train" / "synthetic").glob("*.jpg"))
    assert len(files) == 3
    from mixmim.data.gpu_decode import EncodedImages

    data, geometry, _, _, _, _ = EncodedImages([(str(f), 0) for f in files], 224)[1]
    assert data.numel() > 10_000 and geometry.shape == (5,)  # photograph-like size, not a flat colour


def test_report_is_assembled_from_the_rows(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite><testcase classname="t" name="a" time="1.5"/>'
                     '<testcase classname="t" name="b"><failure message="x"/></testcase>'
                     '<testcase classname="t" name="c"><skipped/></testcase></testsuite></testsuites>')  # fmt: skip
    run = tmp_path / "smoke" / "fixed-encoder" / "mixmim-mixmim_base-encoderMixMIM-B-s0"
    (run / "pretrain").mkdir(parents=True)
    (run / "config.yaml").write_text("{}")
    (run / "pretrain" / "metrics.jsonl").write_text('{"step": 10, "loss": 1.25}\n{"step": 20, "loss": 0.75}\n')
    metrics = {"steps": 20, "loss": 0.8, "images_per_s": 900.0, "nonfinite_events": 0, "wall_time_s": 12.0}
    (run / "pretrain" / "result.json").write_text(json.dumps({"status": "done", "metrics": metrics}))
    (tmp_path / "smoke" / "fixed-encoder" / "mae-broken" / "pretrain").mkdir(parents=True)
    (tmp_path / "smoke" / "fixed-encoder" / "mae-broken" / "config.yaml").write_text("{}")
    error = {"traceback": "Traceback (most recent call last):\n  ...\nNonFiniteLossError: loss is nan at step 3"}
    (tmp_path / "smoke" / "fixed-encoder" / "mae-broken" / "pretrain" / "error.json").write_text(json.dumps(error))
    (tmp_path / "bench" / "bench").mkdir(parents=True)
    bench_row = {"kind": "step", "method": "mixmim", "backbone": "mixmim_base", "attention": "grouped",
                 "compiled": True, "batch_size": 128, "ms_per_step": 210.0, "images_per_s": 609.5,
                 "achieved_tflops": 120.0, "peak_memory_mib": 30000.0, "mfu": 0.4321, "x_official": 1.31,
                 "x_eager": 1.5, "cost_vs_ref": 1.05, "first_loss": 0.9876}  # fmt: skip
    data_row = {"kind": "data", "decode": "gpu", "device": "cuda", "workers": 8, "batch_size": 128,
                "images_per_s": 4000.0, "images_per_s_per_worker": 500.0, "note": ""}  # fmt: skip
    (tmp_path / "bench" / "bench" / "1.jsonl").write_text(json.dumps(bench_row) + "\n" + json.dumps(data_row) + "\n")

    rows = (gpu_check.junit_rows(junit) + gpu_check.smoke_rows(tmp_path / "smoke", "fp16", "gpu")
            + gpu_check.bench_rows(tmp_path / "bench"))  # fmt: skip
    assert [r["kind"] for r in rows] == ["test"] * 3 + ["smoke"] * 2 + ["bench", "data"]
    assert [r["outcome"] for r in rows[:3]] == ["passed", "failed", "skipped"]
    failed, done = rows[3], rows[4]  # sorted by run folder name
    assert failed["status"] == "failed" and done["first_loss"] == 1.25 and done["last_loss"] == 0.75
    results = [gpu_check.StepResult("tests", "failed", 30.0, 75, 1, ["FAILED t::b"]),
               gpu_check.StepResult("bench-mixmim_large", "timed out", 95.0, 95, -9, ["step 3"])]  # fmt: skip
    report = gpu_check.render_report({"gpu": "NVIDIA H200, 139 GiB"}, results, rows)
    assert "- gpu: NVIDIA H200, 139 GiB" in report
    assert "| tests | failed | 30.0 | 75 | 1 |" in report and "| bench-mixmim_large | timed out |" in report
    assert "1 passed, 1 failed, 1 skipped" in report and "- FAILED t::b" in report
    assert "run `mae-broken` (fp16) failed: `NonFiniteLossError: loss is nan at step 3`" in report
    assert "| mixmim-mixmim_base-encoderMixMIM-B-s0 | fp16 | gpu | done | 20 | 1.2 | 0.8 | 0.8 | 900.0 | 0 | 12.0 |" \
        in report
    assert ("| mixmim | mixmim_base | grouped | True | 128 | 210.0 | 609.5 | 120.0 | 30000.0 | 43.2% | 1.3 | 1.5 | 1.1 "
            "| 1.0 |") in report  # fmt: skip
    assert "| gpu | cuda | 8 | 128 | 4000.0 | 500.0 |  |" in report
