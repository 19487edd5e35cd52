"""The results reader: tidy rows, partial and unreadable runs kept with a reason, never crashing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from synthetic_runs import stage_result, write_run

from reports.results import NOT_PLANNED, NOT_PLANNED_REASON, RESULT_COLUMNS, read_curves, read_results


def _row(df: pd.DataFrame, run: str, stage: str, metric: str | None = None) -> pd.Series:
    sel = (df["run"] == run) & (df["stage"] == stage)
    if metric is not None:
        sel &= df["metric"] == metric
    assert sel.sum() == 1, df[sel]
    return df[sel].iloc[0]


def test_columns_and_done_rows(tiny_exp: Path) -> None:
    df = read_results(tiny_exp, ["finetune"])
    assert list(df.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert "setting.mask_ratio" in df.columns
    row = _row(df, "mixmim-s0", "finetune", "top1")
    assert (row["value"], row["status"], row["epochs"], row["effective_batch"]) == (85.0, "done", 100, 1024)
    assert (row["method"], row["backbone"], row["seed"], row["setting"]) == ("mixmim", "mixmim_b", 0, "mask_ratio=0.5")
    assert row["experiment"] == "tiny"
    assert _row(df, "mixmim-s0", "coco", "ap_box")["engine"] == "torchvision"


def test_partial_and_corrupt_runs_have_reasons(tiny_exp: Path) -> None:
    df = read_results(tiny_exp, ["finetune", "knn"])
    corrupt = _row(df, "mae-s1", "finetune")
    assert corrupt["status"] == "failed" and "unreadable" in corrupt["reason"]
    unfinished = _row(df, "mae-s2", "finetune")
    assert unfinished["status"] == "missing" and "3 lines in metrics.jsonl" in unfinished["reason"]
    not_planned = _row(df, "mixmim-r075-s0", "knn")  # a table reads it, but the run's plan never had it
    assert not_planned["status"] == NOT_PLANNED and not_planned["reason"] == NOT_PLANNED_REASON
    manifest = tiny_exp / "mixmim-r075-s0" / "manifest.json"
    saved = manifest.read_text()
    try:  # planned but never started: missing, with the reason
        data = json.loads(saved)
        manifest.write_text(json.dumps({**data, "stages_planned": [*data["stages_planned"], "knn"]}))
        not_started = _row(read_results(tiny_exp, ["finetune", "knn"]), "mixmim-r075-s0", "knn")
    finally:
        manifest.write_text(saved)
    assert not_started["status"] == "missing" and not_started["reason"] == "stage not started"
    non_finite = _row(df, "mixmim-s1", "knn", "top1")
    assert non_finite["status"] == "failed" and pd.isna(non_finite["value"])
    broken = df[df["run"] == "broken-run"].iloc[0]
    assert broken["status"] == "failed" and "manifest.json unreadable" in broken["reason"]
    assert not df["run"].eq("_report").any()


def test_config_yaml_is_the_identity_fallback(tmp_path: Path) -> None:
    run = write_run(
        tmp_path,
        "r",
        method="mae",
        backbone="vit_b",
        seed=3,
        setting={"mask_ratio": 0.75},
        results={"knn": stage_result({"top1": 40.0}, 0, 256, 0.0)},
    )
    (run / "manifest.json").unlink()
    df = read_results(tmp_path)
    row = _row(df, "r", "knn", "top1")
    assert (row["method"], row["seed"], row["setting.mask_ratio"], row["status"]) == ("mae", 3, 0.75, "done")


def test_result_with_status_not_done_is_failed(tmp_path: Path) -> None:
    write_run(
        tmp_path,
        "r",
        method="mae",
        backbone="vit_b",
        seed=0,
        results={"finetune": {"status": "diverged", "reason": "loss is NaN", "metrics": {}}},
    )
    row = _row(read_results(tmp_path), "r", "finetune")
    assert row["status"] == "failed" and row["reason"] == "status 'diverged': loss is NaN"


def test_loss_curves(tiny_exp: Path) -> None:
    curves = read_curves(tiny_exp)
    assert set(curves["run"]) == {"mixmim-s0", "mixmim-s1", "mae-s0"}
    assert curves[curves["run"] == "mae-s0"]["value"].tolist() == [2.0, 1.5, 1.2, 1.0, 0.9]


def test_planned_stage_not_started_and_unplanned_stage_on_disk(tmp_path: Path) -> None:
    run = write_run(
        tmp_path,
        "r",
        method="mae",
        backbone="vit_b",
        seed=0,
        results={"pretrain": stage_result({"loss": 0.5}, 1, 64, 1e-4), "knn": None},
    )
    df = read_results(tmp_path)
    assert _row(df, "r", "knn")["reason"] == "no result.json (started, nothing logged)"
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages_planned"] = ["pretrain", "finetune"]  # the plan is read, the folder is not listed
    (run / "manifest.json").write_text(json.dumps(manifest))
    df = read_results(tmp_path)
    assert _row(df, "r", "finetune")["reason"] == "stage not started"
    assert not df["stage"].eq("knn").any()
    del manifest["stages_planned"]  # no plan: stages are found on disk
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert _row(read_results(tmp_path), "r", "knn")["status"] == "missing"
