"""The benchmark store (:mod:`mixmim.runs.bench_store`): one writer, one reader and one column map, shared by
``bench``, the speed table and the cost and budget conversions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from experiments.budget import bench_rows, find_bench_row
from mixmim.runs.bench_store import (
    COLUMN_TITLES,
    DATA,
    columns,
    new_store_path,
    read_bench_rows,
    store_dir,
    write_rows,
)
from reports.speed import speed_table


def _row(ips: float, **extra) -> dict:
    return {"kind": "step", "method": "mixmim", "backbone": "mixmim_base", "device": "cuda",
            "device_name": "NVIDIA A100", "precision": "bf16", "img_size": 224, "batch_size": 128,
            "attention": "grouped", "optimizer": "adamw-fused", "images_per_s": ips, "default_path": True,
            "time": f"2026-01-0{int(ips) % 9 + 1}", **extra}


def test_rows_written_are_the_rows_read(tmp_path: Path) -> None:
    path = new_store_path(tmp_path, "cuda")
    assert path.parent == store_dir(tmp_path) == tmp_path / "bench" and path.read_text() == ""
    assert new_store_path(tmp_path, "cuda") != path  # never the same file twice
    rows = [_row(100.0), {"kind": DATA, "images_per_s": 5.0}]
    write_rows(path, rows)
    assert read_bench_rows(store_dir(tmp_path)) == [{**rows[0], "source": path.name}]
    assert read_bench_rows(store_dir(tmp_path), kind=DATA) == [{**rows[1], "source": path.name}]
    assert read_bench_rows(tmp_path / "absent") == []


def test_damaged_lines_are_skipped_with_a_warning_by_every_reader(tmp_path: Path, caplog) -> None:
    folder = store_dir(tmp_path)
    folder.mkdir()
    old, new = _row(100.0), _row(300.0)  # one configuration, measured twice
    (folder / "20260101-000000-cuda.jsonl").write_text(json.dumps(old) + "\n")
    (folder / "20260102-000000-cuda.jsonl").write_text(f"[1, 2]\n{json.dumps(new)}\nnot json\n\n")
    with caplog.at_level(logging.WARNING):
        rows = read_bench_rows(folder)
    assert [r["images_per_s"] for r in rows] == [100.0, 300.0]  # oldest file first
    assert sum("not a JSON object" in r.message for r in caplog.records) == 2
    # the budget and cost lookup: newest file first, the same rows (a non-object line once broke it)
    found = find_bench_row(bench_rows(tmp_path), "mixmim", "mixmim_base", gpu="A100")
    assert found == ({**new, "source": "20260102-000000-cuda.jsonl"}, str(folder / "20260102-000000-cuda.jsonl"))
    # the speed table: the newest row of the configuration
    assert list(speed_table(rows)["images_per_s"]) == [300.0]


def test_one_column_map_titles_both_tables() -> None:
    from experiments.bench import TABLE_COLUMNS
    from reports.speed import COLUMNS

    assert columns("method", "img_size") == {"method": "method", "img_size": "px"}
    for table in (TABLE_COLUMNS, COLUMNS):
        assert all(COLUMN_TITLES[field] == title for field, title in table.items())

