"""Benchmark: read and render a synthetic 10,000-run experiment (target: under 5 s).

    python scripts/bench_report.py [--runs 10000] [--dir PATH] [--keep]

Prints the time to write the runs (not part of the target), to read them into a DataFrame, and to render
the tables in every format. A benchmark that prints its time, not a timed test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package, and the tests' synthetic run writer

from synthetic_runs import synthetic_experiment  # noqa: E402

from reports.references import load_references  # noqa: E402
from reports.render import FORMATS, build_tables, format_tables  # noqa: E402
from reports.results import read_results  # noqa: E402
from reports.spec import Column, TableSpec  # noqa: E402

TARGET_S = 5.0
MASK_RATIO_REFERENCE = "mixmim_ablation_mask_ratio_{setting.mask_ratio}_top1"

BENCH_SPECS = (
    TableSpec(
        name="main",
        title="ImageNet-1K by method (mask ratio 0.5)",
        rows=("method",),
        columns=(
            Column("linprobe", "top1", "Linear probe"),
            Column("knn", "top1", "kNN"),
            Column("finetune", "top1", "Fine-tune", reference="{method}_b_600ep_top1"),
        ),
        filters={"setting.mask_ratio": 0.5},
        budget=True,
    ),
    TableSpec(
        name="mask_ratio",
        title="MixMIM mask ratio",
        rows=("setting.mask_ratio",),
        columns=(Column("finetune", "top1", "Top-1", reference=MASK_RATIO_REFERENCE),),
        filters={"method": "mixmim"},
    ),
    TableSpec(
        name="all",
        title="Every method and mask ratio",
        rows=("method", "setting.mask_ratio"),
        columns=(Column("finetune", "top1", "Fine-tune"), Column("linprobe", "top1", "Linear probe")),
    ),
)


def time_report(exp_dir: Path) -> dict[str, float]:
    """Read ``exp_dir`` and render :data:`BENCH_SPECS` in every format; wall and CPU seconds per phase.

    CPU time is printed too because wall time on a shared machine mostly measures the other processes.
    """
    w0, c0 = time.perf_counter(), time.process_time()
    refs = load_references()
    df = read_results(exp_dir)
    w1, c1 = time.perf_counter(), time.process_time()
    tables = build_tables(df, BENCH_SPECS, refs)
    for fmt in FORMATS:
        format_tables(tables, fmt)
    w2, c2 = time.perf_counter(), time.process_time()
    return {"read": w1 - w0, "render": w2 - w1, "read_cpu": c1 - c0, "render_cpu": c2 - c1, "rows": float(len(df))}


def run_benchmark(n_runs: int, exp_dir: Path) -> dict[str, float]:
    """Write ``n_runs`` synthetic runs under ``exp_dir`` (if not there yet), then :func:`time_report`."""
    t0 = time.perf_counter()
    if not exp_dir.exists():
        synthetic_experiment(exp_dir, n_runs, atomic=False)
    return {"write": time.perf_counter() - t0, **time_report(exp_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the runs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic runs (a later --dir run reuses them)")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="mixmim-bench-report-"))
    exp_dir = root / f"bench{args.runs}"
    try:
        t = run_benchmark(args.runs, exp_dir)
    finally:
        if not args.keep:
            shutil.rmtree(exp_dir, ignore_errors=True)
    total, cpu = t["read"] + t["render"], t["read_cpu"] + t["render_cpu"]
    verdict = "within" if total < TARGET_S else "OVER"
    print(
        f"{args.runs} runs ({int(t['rows'])} result rows): write {t['write']:.1f} s (not timed); "
        f"read {t['read']:.2f} s, render {len(BENCH_SPECS)} tables x {len(FORMATS)} formats {t['render']:.2f} s; "
        f"read + render {total:.2f} s wall ({verdict} the {TARGET_S:.0f} s target), {cpu:.2f} s CPU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
