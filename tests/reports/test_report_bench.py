"""The benchmark script runs (on a few runs; the 10,000-run figure is printed by python -m reports.bench_report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.bench_report import main, run_benchmark


def test_benchmark_small(tmp_path: Path) -> None:
    timings = run_benchmark(40, tmp_path / "bench")
    assert timings["rows"] > 0 and timings["read"] >= 0


def test_benchmark_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "20", "--dir", str(tmp_path)]) == 0
    assert "read + render" in capsys.readouterr().out
