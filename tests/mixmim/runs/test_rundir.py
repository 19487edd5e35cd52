"""Run directory: atomic writes (umask modes), results never overwritten, tolerant JSONL, locked manifests."""

import json
import multiprocessing
import os
import stat

import pytest

from mixmim.runs import rundir


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


def test_checkpoints_results_and_run_files_share_the_one_atomic_writer(tmp_path, monkeypatch):
    """Each writer fsyncs its file, renames it into place, then fsyncs the folder (the rename made durable)."""
    import torch

    from mixmim.engine.checkpoint import atomic_torch_save

    real_fsync, synced = os.fsync, []

    def fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writers = {
        "checkpoint": lambda: atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "ckpt" / "checkpoint-last.pth"),
        "result": lambda: rundir.write_result(tmp_path, "knn", {"metrics": {"top1": 1.0}}),
        "json": lambda: rundir.atomic_write_json(tmp_path / "m.json", {"v": 1}),
        "text": lambda: rundir.atomic_write_text(tmp_path / "config.yaml", "seed: 0\n"),
    }
    for name, write in writers.items():
        synced.clear()
        write()
        assert synced == ["file", "dir"], name
    assert not list(tmp_path.rglob("*.tmp"))


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


def _update(args):
    run_dir, i = args
    rundir.update_manifest(run_dir, {f"key{i}": i})
    rundir.update_manifest(run_dir, {f"attempt{i}": i}, stage="pretrain")


def test_concurrent_manifest_updates_lose_nothing(tmp_path):
    """50 processes updating one manifest at once: each read-modify-write holds the manifest's lock."""
    with multiprocessing.get_context("fork").Pool(10) as pool:
        pool.map(_update, [(tmp_path, i) for i in range(50)])
    manifest = rundir.read_json(tmp_path / rundir.MANIFEST_FILE)
    assert sorted(k for k in manifest if k.startswith("key")) == sorted(f"key{i}" for i in range(50))
    assert len(manifest["stages"]["pretrain"]) == 50


def _write_result(args):
    run_dir, i = args
    try:
        rundir.write_result(run_dir, "knn", {"writer": i})
        return i
    except rundir.ResultExistsError:
        return None


def test_of_concurrent_result_writers_exactly_one_wins(tmp_path):
    with multiprocessing.get_context("fork").Pool(8) as pool:
        winners = [i for i in pool.map(_write_result, [(tmp_path, i) for i in range(16)]) if i is not None]
    assert len(winners) == 1 and rundir.read_result(tmp_path, "knn")["writer"] == winners[0]
    assert not list((tmp_path / "knn").glob(".*.tmp"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    saved = os.umask(umask)
    try:
        assert rundir.current_umask() == umask
        rundir.write_result(tmp_path, "knn", {"metrics": {}})
        rundir.update_manifest(tmp_path, {"run": "r"})
        rundir.atomic_write_text(tmp_path / rundir.CONFIG_FILE, "seed: 0\n")
    finally:
        os.umask(saved)
    for path in (tmp_path / "knn" / rundir.RESULT_FILE, tmp_path / rundir.MANIFEST_FILE, tmp_path / rundir.CONFIG_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_done_stages_lists_stages_with_a_result(tmp_path):
    assert rundir.done_stages(tmp_path / "missing") == []
    rundir.stage_dir(tmp_path, "pretrain")
    rundir.write_result(tmp_path, "knn", {})
    assert rundir.done_stages(tmp_path) == ["knn"]
