"""Wall and CPU time of the cheap CLI paths (`list`: target under 1 s) and of a report over 10,000 runs (5 s).

    python scripts/bench_cli.py [--repeats 3] [--runs 10000] [--dir PATH] [--only NAME ...]

Each command runs in a fresh process (``python -m experiments.cli ...``), ``--repeats`` times; the table
gives the minimum wall time (the machine is shared: the minimum is what the command costs, the rest is
waiting), every wall time, and the minimum CPU time (user + system) of the process, which other processes on
the machine barely change. ``report-10k`` is ``mixmim-bench report smoke`` over ``--runs`` synthetic runs
(``tests/synthetic_runs.py``, written once, not timed): reading, tables, plots and the review bundle. The
``torch`` column says whether the process had imported torch when it exited.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = {"report-10k": 5.0, "list": 1.0}
TORCH_MARK = "bench_cli: torch imported: "
# The console script's entry, plus one line at exit that says whether torch was imported.
PROBE = ("import atexit, runpy, sys\n"
         f"atexit.register(lambda: sys.stderr.write('\\n{TORCH_MARK}%s\\n' % ('torch' in sys.modules)))\n"
         "sys.argv = ['mixmim-bench', *sys.argv[1:]]\n"
         "runpy.run_module('experiments.cli', run_name='__main__', alter_sys=True)\n")


def commands(output: Path, big: Path) -> dict[str, list[str]]:
    """name -> CLI arguments."""
    return {
        "help": ["--help"],
        "list": ["list"],
        "show smoke": ["show", "smoke"],
        "status smoke": ["status", "smoke", "--output", str(output)],
        "speed": ["speed", "--output", str(output)],
        "report-10k": ["report", "smoke", "--output", str(big), "--bundle-dir", str(big / "_bundles")],
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(args: list[str]) -> tuple[float, float, bool, int]:
    """Wall and CPU seconds of one run of the CLI with ``args``, whether it imported torch, its exit status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cpu, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, _children_cpu() - cpu, f"{TORCH_MARK}True" in proc.stderr, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10_000, help="synthetic runs of the report benchmark")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (kept; a later call reuses its runs)")
    parser.add_argument("--only", action="append", default=None, help="command names to time (default: all)")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="mixmim-bench-cli-"))
    empty, big = root / "empty", root / f"runs{args.runs}"
    empty.mkdir(parents=True, exist_ok=True)
    cmds = commands(empty, big)
    if args.only:
        cmds = {k: v for k, v in cmds.items() if k in args.only}
    try:
        if "report-10k" in cmds and not (big / "smoke").is_dir():
            sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the tests' synthetic run writer
            from synthetic_runs import synthetic_experiment

            synthetic_experiment(big / "smoke", args.runs)
        print("| command | min wall s | all wall s | min CPU s | torch | exit | target |")
        print("|---|---|---|---|---|---|---|")
        for name, cli_args in cmds.items():
            times, cpus, torch, code = [], [], False, 0
            for _ in range(args.repeats):
                seconds, cpu, torch, code = time_command(cli_args)
                times.append(seconds)
                cpus.append(cpu)
            shutil.rmtree(big / "_bundles", ignore_errors=True)
            target = f"< {TARGET_S[name]:g} s" if name in TARGET_S else ""
            print(f"| {name} | {min(times):.2f} | {' '.join(f'{t:.2f}' for t in times)} | {min(cpus):.2f} "
                  f"| {'yes' if torch else 'no'} | {code} | {target} |", flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
