"""The speed table from the benchmark store: newest row per configuration, formats, the bundle, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mixmim.runs.bench_store import read_bench_rows
from reports.references import References
from reports.report import report_experiment
from reports.spec import TableSpec
from reports.speed import format_speed, speed_table


def _row(method: str, attention: str, ips: float, when: str, device: str = "NVIDIA H200", **extra) -> dict:
    return {"kind": "step", "time": when, "method": method, "backbone": "mixmim_base", "img_size": 224,
            "precision": "bf16", "batch_size": 128, "attention": attention, "optimizer": "adamw-fused",
            "compiled": False, "grad_checkpointing": False, "keep_heap": False, "device_name": device,
            "images_per_s": ips, "ms_per_step": 128e3 / ips, "peak_memory_mib": 30000.0,
            "forward_gflops_per_image": 19.04, "achieved_tflops": 400.0, "mfu": 0.41,
            "x_official": None, "x_release": None, "cost_vs_ref": None,
            "default_path": attention == "grouped", **extra}


def _store(folder: Path) -> Path:
    bench = folder / "bench"
    bench.mkdir(parents=True)
    old = [_row("mixmim", "official", 900.0, "2026-01-01T00:00:00"), _row("mixmim", "grouped", 1000.0,
                                                                          "2026-01-01T00:00:00")]
    new = [_row("mixmim", "official", 950.0, "2026-02-01T00:00:00"), _row("mixmim", "grouped", 1200.0,
                                                                          "2026-02-01T00:00:00", x_official=1.26),
           _row("mae", "grouped", 2000.0, "2026-02-01T00:00:00"), {"kind": "data", "images_per_s": 5000.0}]
    (bench / "20260101-000000-cuda.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    (bench / "20260201-000000-cuda.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new) + "not json\n")
    return bench


def test_newest_row_per_configuration_default_path_first(tmp_path: Path) -> None:
    rows = read_bench_rows(_store(tmp_path))
    assert len(rows) == 5 and {row["kind"] for row in rows} == {"step"}  # the data row and damaged line left out
    table = speed_table(rows, methods=["mixmim"])
    assert list(zip(table["attention"], table["images_per_s"])) == [("grouped", 1200.0), ("official", 950.0)]
    assert table.iloc[0]["source"] == "20260201-000000-cuda.jsonl"
    assert speed_table(rows, backbones=["mixmim_vit_base_patch16"]).empty
    assert speed_table(read_bench_rows(tmp_path / "absent")).empty


def test_formats_round_and_mark_missing(tmp_path: Path) -> None:
    table = speed_table(read_bench_rows(_store(tmp_path)), methods=["mixmim"])
    markdown = format_speed(table)
    assert "| NVIDIA H200" in markdown and "1200.000" in markdown and "1.260" in markdown
    assert " - " in markdown  # a ratio that was not measured
    assert "act-ckpt" not in markdown
    checkpointed = table.assign(grad_checkpointing=True, compiled=True)
    assert "compile, act-ckpt" in format_speed(checkpointed)
    assert r"\toprule" in format_speed(table, "latex") and "<table>" in format_speed(table, "html")
    csv = format_speed(table, "csv")
    assert csv.splitlines()[0].startswith("kind,") and "20260201-000000-cuda.jsonl" in csv
    with pytest.raises(ValueError, match="format"):
        format_speed(table, "pdf")
    assert "mixmim-bench bench" in format_speed(pd.DataFrame())


def test_bundle_holds_the_speed_table(tmp_path: Path, tiny_exp: Path, specs: tuple[TableSpec, ...],
                                      test_refs: References) -> None:
    table = speed_table(read_bench_rows(_store(tmp_path)))
    result = report_experiment(tiny_exp, specs, tmp_path / "out", references=test_refs, speed=table)
    assert "1200.000" in result.speed
    for ext in ("md", "tex", "csv", "html"):
        assert (result.bundle_dir / f"speed.{ext}").is_file()
    assert "speed.md" in (result.bundle_dir / "README.md").read_text()
    plain = report_experiment(tiny_exp, specs, tmp_path / "out2", references=test_refs)
    assert plain.speed == "" and not (plain.bundle_dir / "speed.md").exists()


def test_speed_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.cli import main

    assert main(["speed", "--output", str(tmp_path)]) == 3  # nothing to report
    assert "mixmim-bench bench" in capsys.readouterr().err
    _store(tmp_path)
    assert main(["speed", "--output", str(tmp_path), "--methods", "mae", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 2 and ",mae," in out
