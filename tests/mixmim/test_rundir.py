"""Run directory: atomic writes, results never overwritten silently, tolerant JSONL reading."""

import json
import os

import pytest

from mixmim import rundir


def test_result_written_once(tmp_path):
    rundir.write_result(tmp_path, "knn", {"metrics": {"top1": 50.0}})
    assert rundir.is_done(tmp_path, "knn")
    assert rundir.read_result(tmp_path, "knn")["metrics"]["top1"] == 50.0
    with pytest.raises(rundir.ResultExistsError, match="delete it"):
        rundir.write_result(tmp_path, "knn", {"metrics": {"top1": 0.0}})
    assert rundir.read_result(tmp_path, "knn")["metrics"]["top1"] == 50.0
    rundir.write_result(tmp_path, "knn", {"metrics": {"top1": 1.0}}, overwrite=True)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    rundir.atomic_write_json(path, {"v": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        rundir.atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_nonfinite_values_become_null(tmp_path):
    rundir.atomic_write_json(tmp_path / "r.json", {"loss": float("nan"), "xs": [1.0, float("inf")]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"loss": None, "xs": [1.0, None]}


def test_jsonl_skips_truncated_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rundir.append_jsonl(path, {"step": 1})
    rundir.append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a crash mid-line
    assert [r["step"] for r in rundir.read_jsonl(path)] == [1, 2]


def test_manifest_merges_stage_entries(tmp_path):
    rundir.update_manifest(tmp_path, {"run": "r", "seed": 0})
    rundir.update_manifest(tmp_path, {"lr": 1e-3}, stage="pretrain")
    rundir.update_manifest(tmp_path, {"epochs": 2}, stage="pretrain")
    m = rundir.read_json(tmp_path / "manifest.json")
    assert m["run"] == "r" and m["stages"]["pretrain"] == {"lr": 1e-3, "epochs": 2}
