"""The one stage runner: skip when done, seed, one writer of result.json and the manifest entry, GPU-hours."""

from __future__ import annotations

import pytest
import torch

from mixmim.config import ConfigError, RunConfig
from mixmim.engine.stage import StageResult, gpu_hours, run_stage
from mixmim.runs.rundir import read_json, read_result


def _work(calls: list[float]):
    def work(ctx) -> StageResult:
        calls.append(torch.rand(()).item())  # seeded by the runner with cfg.seed
        recipe = {"effective_batch": 8, "lr": 0.1, "blr": 0.0, "lr_scale_base": 256, "precision": "fp32",
                  "world_size": 2, "epochs": 3}
        return StageResult(metrics={"top1": 50.0}, recipe=recipe, wall_time_s=7200.0, data_root="d",
                           extra={"epochs": 1.5, "steps": 4}, manifest_extra={"engine": "x"})

    return work


def test_result_and_manifest_come_from_one_value_and_a_done_stage_is_skipped(tmp_path):
    cfg, calls = RunConfig(seed=3), []
    result = run_stage("probe", cfg, tmp_path, _work(calls))
    assert result == read_result(tmp_path, "probe")
    assert result["metrics"] == {"top1": 50.0} and result["status"] == "done"
    assert result["epochs"] == 1.5 and result["seed"] == 3 and result["gpu_hours"] == 0.0  # CPU: no GPU-hours
    entry = read_json(tmp_path / "manifest.json")["stages"]["probe"]
    assert entry["epochs"] == 3 and entry["engine"] == "x" and entry["wall_time_s"] == 7200.0 and "steps" not in entry
    assert run_stage("probe", cfg, tmp_path, _work(calls)) == result and len(calls) == 1  # skipped: no work
    torch.manual_seed(3)
    assert calls == [torch.rand(()).item()]


def test_a_stage_without_recipe_records_its_time_and_no_manifest_entry(tmp_path):
    result = run_stage("fit", RunConfig(), tmp_path, lambda ctx: StageResult({"n": 1}, None, 2.0, extra={"k": 1}))
    assert {k: result[k] for k in ("metrics", "wall_time_s", "k")} == {"metrics": {"n": 1}, "wall_time_s": 2.0, "k": 1}
    assert not (tmp_path / "manifest.json").exists()


def test_a_config_changed_past_its_checks_is_refused_before_work(tmp_path):
    cfg = RunConfig()
    cfg.method.mask_type = "mxi"
    with pytest.raises(ConfigError, match="'mxi' for key 'method.mask_type'"):
        run_stage("probe", cfg, tmp_path, lambda ctx: pytest.fail("work ran"))


def test_gpu_hours_count_processes_on_gpus_only():
    assert gpu_hours(3600.0, 8, torch.device("cuda", 0)) == 8.0 and gpu_hours(3600.0, 8, "cpu") == 0.0
