"""Cost before launch (``show --cost``, ``run --dry-run``), measured GPU-hours in the report, and ``--only``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_runs import stage_result, write_run

from experiments.budget import gpu_matches
from experiments.cli import main
from experiments.cost import PRETRAIN_GFLOPS, peak_tflops, project_costs
from experiments.registry import get_experiment


def _store(tmp_path: Path, *rows: dict) -> None:
    (tmp_path / "bench").mkdir(exist_ok=True)
    (tmp_path / "bench" / "20260101-000000-cuda.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(device: str = "cuda", name: str = "NVIDIA A100-SXM4-80GB", precision: str = "fp16", ips: float = 1000.0):
    return {"kind": "step", "method": "mixmim", "backbone": "mixmim_base", "device": device, "device_name": name,
            "precision": precision, "img_size": 224, "images_per_s": ips, "default_path": True}


def _lines(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


def test_show_cost_uses_the_bench_row_of_the_gpu_else_an_estimate(tmp_path, capsys):
    _store(tmp_path, _row(), _row(device="cpu", name="cpu", precision="fp32", ips=3.0),
           _row(name="NVIDIA H100 80GB HBM3", ips=2500.0))
    assert main(["show", "imagenet-main", "--cost", "--gpu", "A100", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "version:" not in out  # --cost prints the table, not the configs
    base = _lines(out, "mixmim_base-pretrain_epochs300", "| pretrain")
    # 1,281,167 images x 300 epochs / 1000 img/s/GPU / 3600 = 106.8 GPU-hours over 16 GPUs
    assert len(base) == 1 and "| 106.8 " in base[0] and "bench: NVIDIA A100" in base[0] and "6.7 h" in base[0]
    large = _lines(out, "mixmim_large-pretrain_epochs300", "| pretrain")[0]
    assert "estimate: 38.6 GFLOPs/img (FLOP table), MFU 0.30 assumed of A100 fp16 peak" in large
    finetune = _lines(out, "mixmim_base-pretrain_epochs300", "| finetune")[0]
    assert "estimate:" in finetune  # the benchmark times pre-training only
    assert _lines(out, "all runs", "total")

    assert main(["show", "imagenet-main", "--cost", "--gpu", "H100", "--output", str(tmp_path), "--only",
                 "*base*300*"]) == 0
    out = capsys.readouterr().out
    assert "bench: NVIDIA H100" in out and "| 42.7 " in out  # 1,281,167 x 300 / 2500 / 3600
    assert "mixmim_large" not in out


def test_fixed_encoder_cost_table_is_complete(tmp_path, capsys):
    assert main(["show", "fixed-encoder", "--cost", "--gpu", "A100", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    exp = get_experiment("fixed-encoder")
    for cfg in exp.runs:
        for stage in cfg.stages:
            line = _lines(out, f"| {cfg.name} ", f"| {stage} ")
            assert len(line) == 1, (cfg.name, stage)
            cells = [c.strip() for c in line[0].split("|")]  # '', run, stage, GPUs, images, GPU-hours, wall, source
            assert cells[5] != "-" and cells[6] != "-" and cells[7].startswith(("estimate:", "negligible:"))
    assert all((cfg.method.name, cfg.model.backbone) in PRETRAIN_GFLOPS for cfg in exp.runs)  # no counting


def test_mfu_scales_the_estimate_and_cpu_runs_cost_no_gpu_hours(tmp_path):
    runs = get_experiment("imagenet-main").runs[:1]
    low, high = (project_costs(runs, tmp_path, "A100", mfu) for mfu in (0.2, 0.4))
    assert low[0].gpu_hours == pytest.approx(2 * high[0].gpu_hours)
    smoke = project_costs(get_experiment("smoke").runs, tmp_path)
    assert all(c.gpu_hours == 0.0 and not c.wall_hours for c in smoke)


def test_unknown_gpu_is_refused_with_the_known_ones(tmp_path, capsys):
    assert main(["show", "imagenet-main", "--cost", "--gpu", "TPUv4", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "TPUv4" in err and "A100" in err


def test_dry_run_prints_the_cost(tmp_path, capsys):
    assert main(["run", "smoke", "--variant", "debug", "--dry-run", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 runs would launch" in out and "Projected cost" in out and "no GPU-hours" in out
    assert not (tmp_path / "smoke-debug").exists()


def test_report_puts_measured_gpu_hours_beside_the_projection(tmp_path, capsys):
    exp = get_experiment("imagenet-main")
    for cfg in exp.runs[:2]:
        results = {"pretrain": stage_result({"loss": 0.4}, 300, 2048, 1e-3, gpu_hours=120.0),
                   "finetune": stage_result({"top1": 84.0, "top5": 97.0}, 100, 1024, 1e-3, gpu_hours=35.0)}
        write_run(tmp_path / "imagenet-main", cfg.name, method="mixmim", backbone=cfg.model.backbone, seed=0,
                  setting=cfg.setting, results=results)
    assert main(["report", "imagenet-main", "--gpu", "A100", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "measured GPU-hours" in out
    pretrain = _lines(out, f"| {exp.runs[0].name} ", "| pretrain ")[0]
    assert "| 130.3 " in pretrain and "| 120.0 " in pretrain  # projection, then the measured figure
    assert "| 310.0 " in _lines(out, "all runs", "total")[0]  # 2 x (120 + 35) measured


def test_only_filters_runs_and_refuses_patterns_that_match_nothing(tmp_path, capsys):
    assert main(["show", "smoke", "--only", "mixmim-*", "--only", "random-*"]) == 0
    out = capsys.readouterr().out
    assert "## run mixmim-mixmim_tiny_32-s0" in out and "## run random-mixmim_tiny_32-s0" in out
    assert "## run mae-" not in out
    assert main(["status", "smoke", "--only", "mae*", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mae-mixmim_tiny_32-s0" in out and "simmim-" not in out
    assert main(["status", "smoke", "--only", "mixmim-s9", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--only 'mixmim-s9' matches no run of 'smoke'" in err and "beit-mixmim_tiny_32-s0" in err


def test_run_only_launches_the_matching_runs(tmp_path, capsys):
    assert main(["run", "smoke", "--variant", "debug", "--dry-run", "--only", "mae-*", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 runs would launch" in out and "mae-mixmim_tiny_32-s0:" in out and "mixmim-mixmim_tiny_32-s0:" not in out


def test_gpu_names_match_as_whole_words():
    assert gpu_matches("A100", "NVIDIA A100-SXM4-80GB") and gpu_matches("h100", "NVIDIA H100 80GB HBM3")
    assert not gpu_matches("A10", "NVIDIA A100-SXM4-80GB")
    assert peak_tflops("H100", "bf16") == 989.4 and peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("A100", "fp32") == 156.0  # fp32 matmuls run as TF32 in the estimate


def test_report_only_keeps_the_matching_runs(tmp_path, capsys):
    for method in ("mixmim", "mae"):
        write_run(tmp_path / "smoke", f"{method}-mixmim_tiny_32-s0", method=method, backbone="mixmim_tiny_32", seed=0,
                  results={s: stage_result({"top1": 80.0, "loss": 0.5}, 1, 64, 1e-3) for s in ("linprobe", "knn")})
    assert main(["report", "smoke", "--only", "mae-*", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "80.00" in _lines(out, "| MAE ")[0] and "80.00" not in _lines(out, "| MixMIM")[0]  # rows fixed by the spec
    manifests = json.loads((tmp_path / "smoke" / "_report" / "smoke-report" / "runs" / "manifests.json").read_text())
    assert list(manifests) == ["mae-mixmim_tiny_32-s0"]  # run -> manifest



def test_each_stage_line_prints_the_rate_its_hours_come_from():
    """The probe's images cost one forward pass: its line prints that rate (3x the training rate), and its
    GPU-hours are its images over the printed rate (a reviewer's check: 115.3M / 954 img/s was 33.6 h, not 11.2)."""
    import re

    from experiments.cost import stage_cost

    cfg = get_experiment("fixed-encoder").runs[0]
    for stage in ("pretrain", "linprobe", "finetune"):
        cost = stage_cost(cfg, stage, "A100", [], 0.3)
        rate = float(re.search(r"(\d+) img/s/GPU", cost.source).group(1))
        assert cost.gpu_hours == pytest.approx(cost.images / rate / 3600, rel=2e-3), (stage, cost.source)
    assert "(forward only)" in stage_cost(cfg, "linprobe", "A100", [], 0.3).source
