"""The benchmark script runs (on a few runs; the 10,000-run figure is printed by python scripts/bench_report.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_report import main, run_benchmark  # noqa: E402


def test_benchmark_small(tmp_path: Path) -> None:
    timings = run_benchmark(40, tmp_path / "bench")
    assert timings["rows"] > 0 and timings["read"] >= 0 and timings["full"] > 0 and timings["page_bytes"] > 0
    assert (tmp_path / "bench" / "_report" / "bench-report" / "report.html").is_file()


def test_benchmark_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "20", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "read + render" in out and "full report over 1 repeat(s): best" in out
