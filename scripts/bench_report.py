"""Benchmark: the full report of a synthetic 10,000-run experiment (target: under 5 s).

    python scripts/bench_report.py [--runs 10000] [--dir PATH] [--keep] [--repeat N]

Prints the time to write the runs (not part of the target), then per repeat: the read into a DataFrame and
the render of the tables in every format, and the whole ``report_experiment`` (read, tables, curves, plots,
the review bundle with its page, and its zip): wall and CPU seconds, then the best and the median over the
repeats. A benchmark that prints its time, not a timed test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package, and the tests' synthetic run writer

from synthetic_runs import synthetic_experiment  # noqa: E402

from baselines.registry import pretrain_losses  # noqa: E402
from reports.page import PageContext  # noqa: E402
from reports.references import load_references  # noqa: E402
from reports.render import FORMATS, build_tables, format_tables  # noqa: E402
from reports.report import report_experiment  # noqa: E402
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


def time_full_report(exp_dir: Path, out_dir: Path) -> dict[str, float]:
    """``report_experiment`` of ``exp_dir`` into ``out_dir`` (replacing the previous bundle): wall and CPU s,
    and the page's size in bytes."""
    w0, c0 = time.perf_counter(), time.process_time()
    context = PageContext(pretrain_losses=pretrain_losses())  # the loss kinds the CLI passes (method cards)
    result = report_experiment(exp_dir, BENCH_SPECS, out_dir, command="scripts/bench_report.py", context=context)
    return {"full": time.perf_counter() - w0, "full_cpu": time.process_time() - c0,
            "page_bytes": float(result.page.stat().st_size), "files": float(len(result.files))}


def run_benchmark(n_runs: int, exp_dir: Path) -> dict[str, float]:
    """Write ``n_runs`` synthetic runs under ``exp_dir`` (if not there yet), then :func:`time_report` and
    :func:`time_full_report` (the bundle goes to ``<exp_dir>/_report``)."""
    t0 = time.perf_counter()
    if not exp_dir.exists():
        synthetic_experiment(exp_dir, n_runs, atomic=False)
    written = time.perf_counter() - t0
    return {"write": written, **time_report(exp_dir), **time_full_report(exp_dir, exp_dir / "_report")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the runs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic runs (a later --dir run reuses them)")
    parser.add_argument("--repeat", type=int, default=1, help="timed repeats (best and median printed)")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="mixmim-bench-report-"))
    exp_dir = root / f"bench{args.runs}"
    fulls, cpus = [], []
    try:
        for _ in range(args.repeat):
            t = run_benchmark(args.runs, exp_dir)
            fulls.append(t["full"])
            cpus.append(t["full_cpu"])
            total, cpu = t["read"] + t["render"], t["read_cpu"] + t["render_cpu"]
            print(
                f"{args.runs} runs ({int(t['rows'])} result rows): write {t['write']:.1f} s (not timed); "
                f"read {t['read']:.2f} s, render {len(BENCH_SPECS)} tables x {len(FORMATS)} formats "
                f"{t['render']:.2f} s; read + render {total:.2f} s wall, {cpu:.2f} s CPU; full report (bundle, "
                f"page {t['page_bytes'] / 1024:.0f} KiB, zip; {int(t['files'])} files) {t['full']:.2f} s wall, "
                f"{t['full_cpu']:.2f} s CPU"
            )
    finally:
        if not args.keep:
            shutil.rmtree(exp_dir, ignore_errors=True)
    best, median = min(fulls), statistics.median(fulls)
    verdict = "within" if best < TARGET_S else "OVER"
    print(f"full report over {len(fulls)} repeat(s): best {best:.2f} s, median {median:.2f} s wall ({verdict} the "
          f"{TARGET_S:.0f} s target); CPU best {min(cpus):.2f} s, median {statistics.median(cpus):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
