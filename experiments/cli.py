"""The ``mixmim-bench`` command line: list, show, run, status, report, models, bench, speed, preflight.

``--output`` is the outputs root everywhere: an experiment's runs live in ``<output>/<experiment>/<run>/``
(``<experiment>-debug`` / ``-small`` for the debug and small variants).

Cheap paths stay cheap: every import that is not needed to build the parser happens inside the command that
needs it, and only ``models``, ``bench``, running stages and cost estimates of models outside the FLOP table
(``experiments/cost.py``) load torch (``tests/experiments/test_cli_imports.py`` checks each path).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

# Before torch loads: OpenMP threads that spin while waiting make CPU runs 10x slower as soon as another
# process shares the cores (measured: 2 threads 4.3 s/step vs 1 thread 0.29 s/step on a busy 2-core
# machine; 0.29 s with PASSIVE). Slurm jobs inherit it. Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tabulate import tabulate

DEFAULT_OUTPUT = "outputs"
log = logging.getLogger("mixmim-bench")


def _add_experiment_args(parser: argparse.ArgumentParser, overrides: bool = True) -> None:
    parser.add_argument("experiment", help="experiment name (see `mixmim-bench list`)")
    parser.add_argument("--variant", choices=("full", "debug", "small"), default="full",
                        help="debug: the same runs on the built-in data with tiny schedules (CPU, < 1 min); small: "
                             "ImageNet-100 at 128 px, short schedules (ablations and fixed-encoder)")
    parser.add_argument("--finetune-protocol", choices=("shared", "own"), default="shared",
                        help="fixed-encoder: shared (MixMIM's fine-tuning recipe for every method; default) or own "
                             "(each method's official recipe, from the shared runs' pre-training: run shared first)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="outputs root (default: ./outputs)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only the runs whose names match this glob, e.g. 'mixmim-*' or '*-s1' (repeatable)")
    parser.add_argument("--seeds", default=None, metavar="N|LIST",
                        help="replicate every run: N seeds (0..N-1) or a list (0,3,5); default: the experiment's "
                             "own (seed 0). Runs are named ...-s<seed>; tables show means with 95%% intervals")
    if overrides:
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="typed config override applied to every run, e.g. pretrain.epochs=10")
        parser.add_argument("--budget", help="fixed budget: epochs=N | gpu-hours=H | flops=F")


def _add_cost_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", default=None,
                        help="GPU type of the cost projection, e.g. A100, H100 (default: this machine's, else A100)")
    parser.add_argument("--mfu", type=float, default=None,
                        help="model FLOPs utilisation assumed by estimates without a benchmark row (default 0.3)")


def _add_bundle_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true",
                        help="keep earlier review bundles: write <experiment>-report-NNN (default: replace "
                             "<experiment>-report)")
    parser.add_argument("--full-bundle", action="store_true",
                        help="copy every run's config, result, metrics and log files into the bundle (default: the "
                             "page, tables, results, curves, configs and manifests)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixmim-bench", description="MixMIM reproducibility benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="experiments with descriptions and run counts")
    show = sub.add_parser("show", help="the runs, stages and resolved configs an experiment would launch")
    _add_experiment_args(show)
    show.add_argument("--cost", action="store_true",
                      help="only the projected GPU-hours and wall time per run and stage (no configs)")
    show.add_argument("--resolve", type=float, metavar="DIFF",
                      help="with --cost: the seeds per arm a difference of DIFF (e.g. 0.3 top-1) needs, and their "
                           "GPU-hours")
    show.add_argument("--spread", type=float, metavar="SD",
                      help="seed-to-seed sd for --resolve (default: measured from the results, else MAE's "
                           "fine-tuning spread 0.08)")
    _add_cost_args(show)
    run = sub.add_parser("run", help="run an experiment (skips done stages, resumes partial ones)")
    _add_experiment_args(run)
    run.add_argument("--executor", choices=("local", "slurm", "debug"), help="where stages run (default: local)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print the plan and its projected cost; launch nothing")
    _add_cost_args(run)
    _add_bundle_args(run)
    run.add_argument("--force-config", action="store_true",
                     help="accept a changed config in folders that hold results: the stages not yet done run with "
                          "it (the change is recorded in manifest.json)")
    run.add_argument("--takeover", action="store_true",
                     help="launch stages whose Slurm jobs still look queued or running, when you know they are dead")
    status = sub.add_parser("status", help="per run and stage: done, running, failed (with log), pending")
    _add_experiment_args(status, overrides=False)
    report = sub.add_parser("report", help="paper-style tables, plots and a review bundle")
    _add_experiment_args(report, overrides=False)
    report.add_argument("--format", dest="formats", action="append",
                        choices=("markdown", "latex", "csv", "html"), help="formats to print (default markdown)")
    report.add_argument("--bundle-dir", help="where the review bundle goes (default <output>/<experiment>/_report)")
    _add_bundle_args(report)
    _add_cost_args(report)
    models = sub.add_parser("models", help="registered backbones with parameters and FLOPs")
    models.add_argument("names", nargs="*", help="backbones to show (default: all)")
    bench = sub.add_parser("bench", help="training-step throughput, memory, FLOPs and MFU per method")
    from experiments.bench import add_bench_arguments

    add_bench_arguments(bench)
    preflight = sub.add_parser("preflight", help="every stage shape built as the run builds it and stepped K times "
                                                 "on real JPEGs: memory, step time, loader, disk, cost")
    _add_experiment_args(preflight)
    preflight.add_argument("--steps", type=int, default=2, metavar="K", help="optimizer steps per stage (default 2)")
    preflight.add_argument("--batch-size", type=int, default=None,
                           help="per-rank batch of every stage (default: the recipe's on CUDA, 2 on CPU)")
    preflight.add_argument("--keep-scratch", action="store_true", help="keep the scratch run folders of _preflight/")
    preflight.add_argument("--scratch", default=None, metavar="DIR",
                           help="where the chains' scratch run folders go (default <output>/<exp>/_preflight/scratch; "
                                "e.g. a RAM filesystem such as /dev/shm: the checkpoints are written there, then "
                                "removed)")
    _add_cost_args(preflight)
    speed = sub.add_parser("speed", help="the speed table of every benchmark row in <output>/bench")
    speed.add_argument("--format", dest="formats", action="append", choices=("markdown", "latex", "csv", "html"),
                       help="formats to print (default markdown)")
    speed.add_argument("--methods", help="comma-separated methods to show (default: all)")
    speed.add_argument("--backbones", help="comma-separated backbones to show (default: all)")
    speed.add_argument("--output", default=DEFAULT_OUTPUT, help="outputs root (default: ./outputs)")
    return parser


def cmd_list(_args) -> int:
    from experiments.catalog import CATALOG  # metadata: no experiment is built

    rows = [{"experiment": name, "runs": info.runs, "debug runs": info.debug_runs, "description": info.description}
            for name, info in CATALOG.items()]
    print(tabulate(rows, headers="keys", tablefmt="github"))
    return 0


def _experiment(args):
    from experiments.launching import apply_to_runs
    from experiments.registry import get_experiment
    from experiments.run_filter import only_runs
    from experiments.seeds import parse_seeds, replicate

    exp = get_experiment(args.experiment, args.variant, getattr(args, "finetune_protocol", "shared"))
    exp = replicate(exp, parse_seeds(args.seeds))
    exp = only_runs(exp, getattr(args, "only", []))
    return apply_to_runs(exp, getattr(args, "overrides", []))


def _cost_table(args, runs, measured=None, costs=None) -> str:
    from experiments.cost import cost_table, default_gpu

    return cost_table(costs or _costs(args, runs), args.gpu or default_gpu(), measured)


def _costs(args, runs):
    from experiments.cost import DEFAULT_MFU, default_gpu, project_costs

    return project_costs(runs, Path(args.output), args.gpu or default_gpu(), args.mfu or DEFAULT_MFU)


def _budget(args):
    """The ``--budget`` of ``args``, or None.

    Raises:
        BudgetError: a budget with ``--finetune-protocol own``: own runs fine-tune the shared runs' encoders by run
            name, and budgeted shared runs keep the unbudgeted names, so the budget could not say which pre-training
            an own run inherits.
    """
    from experiments.budget import Budget, BudgetError

    if not getattr(args, "budget", None):
        return None
    if getattr(args, "finetune_protocol", "shared") == "own":
        raise BudgetError(f"--budget {args.budget} does not go with --finetune-protocol own: own runs fine-tune the "
                          "shared runs' encoders (same names with or without a budget), whose pre-training the budget "
                          "sets. Run the shared protocol with --budget, then the own protocol without it, each with "
                          "its own --output if the budgeted and unbudgeted pre-trainings must both exist")
    return Budget.parse(args.budget)


def cmd_show(args) -> int:
    from experiments.budget import apply_budget
    from mixmim.config import ConfigError, to_yaml

    exp = _experiment(args)
    apply_budget(exp.runs, _budget(args), Path(args.output))
    print(f"# {exp.name} ({exp.variant}): {exp.description}\n")
    if args.resolve is not None and not args.cost:
        raise ConfigError("--resolve goes with --cost: mixmim-bench show EXP --cost --resolve 0.3")
    if args.cost:
        costs = _costs(args, exp.runs)
        print(_cost_table(args, exp.runs, costs=costs))
        if args.resolve is not None:
            from experiments.launching import experiment_dir
            from experiments.resolve import resolve_text

            hours = [c.gpu_hours or 0.0 for c in costs]
            print("\n" + resolve_text(exp, experiment_dir(Path(args.output), exp), args.resolve, args.spread, hours))
        return 0
    from experiments.recipe_table import finetune_table, recipe_table

    print(f"## recipes\n\n{recipe_table(exp)}\n")
    if details := finetune_table(exp):
        print(f"## fine-tuning details\n\n{details}\n")
    for cfg in exp.runs:
        print(f"## run {cfg.name}: stages {' -> '.join(cfg.stages)}\n")
        print(to_yaml(cfg))
    return 0


def _shared_first(args) -> str:
    """The command that runs the shared protocol's runs that ``args`` (an own-protocol ``run``) fine-tunes."""
    words = ["mixmim-bench", "run", args.experiment, "--variant", args.variant, "--output", args.output]
    for pattern in args.only:
        words += ["--only", pattern]
    words += ["--seeds", args.seeds] if args.seeds else []
    for override in args.overrides:
        words += ["--set", override]
    return "`" + " ".join(shlex.quote(w) for w in words) + "`"


def cmd_run(args) -> int:
    from experiments.launching import MissingSiblingsError, RunSetupError

    try:
        return _run(args)
    except MissingSiblingsError as err:
        raise RunSetupError(err.message(_shared_first(args))) from None


def _run(args) -> int:
    from experiments.launching import dry_run_plan, experiment_dir, launch_experiment

    exp = _experiment(args)
    budget = _budget(args)
    executors = sorted({args.executor or cfg.launch.executor for cfg in exp.runs})
    if args.dry_run:
        lines = dry_run_plan(exp, Path(args.output), budget, args.force_config, args.executor)
        print("\n".join(lines))
        print(f"{len(lines)} runs would launch with executor '{', '.join(executors)}'\n")
        print(_cost_table(args, exp.runs))
        return 0
    report = launch_experiment(exp, Path(args.output), args.executor, budget, args.force_config, args.takeover)
    print(report.summary())
    if "slurm" in executors:
        print(f"submitted; follow with `mixmim-bench status {exp.name} --variant {exp.variant} --output {args.output}`")
        return 0 if report.ok else 1
    text, page = _render(exp, experiment_dir(Path(args.output), exp), None, ["markdown"], _command(args), args)
    print(text)
    print(f"\nReview page: {page}")  # the last line: open it in a browser
    return 0 if report.ok else 1


def cmd_status(args) -> int:
    from experiments.launching import experiment_dir
    from experiments.stages import STAGES
    from mixmim.config import load_yaml
    from slurm import RunSpec, StageSpec, status

    exp = _experiment(args)
    root = experiment_dir(Path(args.output), exp)
    specs = []
    for cfg in exp.runs:
        launched = root / cfg.name / "config.yaml"  # what was actually launched (with its --set overrides)
        cfg = load_yaml(launched) if launched.is_file() else cfg
        specs.append(RunSpec(run_dir=root / cfg.name, name=cfg.name,
                             stages=[StageSpec(name=s, fn=STAGES[s], cfg=cfg) for s in cfg.stages]))
    rows = [{"run": s.run, "stage": s.stage, "state": s.state, "log": str(s.log_path or "")} for s in status(specs)]
    print(tabulate(rows, headers="keys", tablefmt="github"))
    return 1 if any(r["state"] == "failed" for r in rows) else 0


def _render(exp, exp_dir: Path, bundle_dir, formats, command: str, args) -> str:
    from experiments.registry import FINETUNE_PROTOCOL
    from mixmim.runs.bench_store import read_bench_rows, store_dir
    from reports.report import report_experiment
    from reports.speed import speed_table

    methods = {cfg.method.name for cfg in exp.runs}
    backbones = {cfg.model.backbone for cfg in exp.runs}
    speed = speed_table(read_bench_rows(store_dir(exp_dir.parent)), methods, backbones)
    runs = [cfg.name for cfg in exp.runs] if args.only else None
    protocol = getattr(args, "finetune_protocol", "shared")
    if runs is None and exp.name in FINETUNE_PROTOCOL and exp_dir.is_dir():
        # both protocols' runs share the folder: the bundle (runs, curves) holds this protocol's, every seed found
        from experiments.seeds import base_name

        bases = {base_name(cfg.name) for cfg in exp.runs}
        runs = [d.name for d in exp_dir.iterdir() if d.is_dir() and base_name(d.name) in bases]
    if bundle_dir is None and protocol != "shared":  # beside the shared protocol's bundle, not over it
        from reports.report import default_output_dir

        bundle_dir = default_output_dir(exp_dir) / f"finetune-{protocol}"
    result = report_experiment(exp_dir, exp.tables, bundle_dir, formats=formats, command=command, speed=speed,
                               runs=runs, context=_page_context(exp, exp_dir, command, args),
                               keep=args.keep, full=args.full_bundle)
    texts = [result.tables.get(fmt, "") for fmt in formats]
    if result.speed:
        texts.append(f"Training-step speed (`mixmim-bench bench`, {store_dir(exp_dir.parent)}):\n\n{result.speed}")
    measured = _measured_gpu_hours(result.results)
    if measured:  # finished stages: their GPU-hours beside the projection
        texts.append(_cost_table(args, exp.runs, measured))
    # on stderr: `report --format latex > table.tex` keeps only the tables
    print(f"Review bundle: {result.bundle_dir} ({result.zip_path}); page: {result.page}", file=sys.stderr)
    return "\n\n".join(texts), result.page


def _page_context(exp, exp_dir: Path, command: str, args):
    """The review page's header, cost (projection beside measured), recipes, deviations and loss kinds of ``exp``."""
    from baselines.registry import pretrain_losses
    from experiments.cost import DEFAULT_MFU, cost_rows, default_gpu, project_costs
    from experiments.deviations import NOTE, deviation_rows, deviation_sources
    from experiments.recipe_table import RECIPE_NOTE, recipe_rows
    from reports.page import PageContext
    from reports.references import load_references

    recipes = load_references().recipes
    planned = deviation_rows(exp, recipes)
    gpu = args.gpu or default_gpu()
    costs = project_costs(exp.runs, Path(args.output), gpu, args.mfu or DEFAULT_MFU)

    def cost(results):
        return cost_rows(costs, _measured_gpu_hours(results) if len(results) else {})

    return PageContext(
        description=exp.description, variant=exp.variant, command=command,
        cost=cost, cost_note=f"projected on {gpu} GPUs (GPU-hours: all GPUs of a run together; wall: perfect "
        "scaling over the run's GPUs); source per line: a `mixmim-bench bench` row or an estimate from FLOPs",
        recipes=recipe_rows(exp), recipe_note=RECIPE_NOTE,
        deviations=lambda results: deviation_rows(exp, recipes, _finished_runs(results)),
        deviation_note=NOTE + "\n" + deviation_sources(planned, recipes),
        pretrain_losses=pretrain_losses())


def _finished_runs(results) -> set[str]:
    """The runs with at least one finished stage in ``results`` (``reports.results`` rows)."""
    return set(results.loc[results["status"] == "done", "run"]) if len(results) and "status" in results else set()


def _measured_gpu_hours(results) -> dict[tuple[str, str], float]:
    """(run, stage) -> GPU-hours recorded by finished stages (0 for CPU runs: then nothing to compare)."""
    done = results[(results["status"] == "done") & (results["gpu_hours"] > 0)] if "gpu_hours" in results else []
    return {(r, s): float(h) for r, s, h in done[["run", "stage", "gpu_hours"]].drop_duplicates(["run", "stage"])
            .itertuples(index=False)} if len(done) else {}


def _command(args) -> str:
    return "mixmim-bench " + " ".join(sys.argv[1:]) if sys.argv[1:] else f"mixmim-bench {args.command}"


def cmd_report(args) -> int:
    from experiments.launching import experiment_dir

    exp = _experiment(args)
    formats = args.formats or ["markdown"]
    print(_render(exp, experiment_dir(Path(args.output), exp), args.bundle_dir, formats, _command(args), args)[0])
    return 0


def cmd_models(args) -> int:
    from experiments.models_table import print_models

    print_models(args.names or None)
    return 0


def cmd_bench(args) -> int:
    from experiments.bench import run_bench

    run_bench(args)
    return 0


def cmd_preflight(args) -> int:
    import torch

    from experiments.cost import default_gpu
    from experiments.launching import experiment_dir
    from experiments.preflight import PreflightOptions, run_preflight

    exp = _experiment(args)
    if args.budget:
        from experiments.budget import apply_budget

        apply_budget(exp.runs, _budget(args), Path(args.output))
    if args.steps < 1 or (args.batch_size is not None and args.batch_size < 1):
        print("mixmim-bench: error: --steps and --batch-size must be >= 1", file=sys.stderr)
        return 2
    batch = args.batch_size or (None if torch.cuda.is_available() else 2)
    opts = PreflightOptions(steps=args.steps, batch_size=batch, gpu=args.gpu or default_gpu(),
                            keep_scratch=args.keep_scratch, scratch=Path(args.scratch) if args.scratch else None)
    result = run_preflight(exp.runs, experiment_dir(Path(args.output), exp), Path(args.output), opts,
                           f"Preflight of {exp.name} ({exp.variant})", progress=lambda m: print(m, file=sys.stderr))
    print(result.markdown)
    for line in result.failures():
        print(line, file=sys.stderr)
    print(f"rows and table: {result.folder}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_speed(args) -> int:
    from mixmim.runs.bench_store import read_bench_rows, store_dir
    from reports.speed import format_speed, speed_table

    def names(text):
        return [n.strip() for n in text.split(",") if n.strip()] if text else None

    bench_dir = store_dir(args.output)
    table = speed_table(read_bench_rows(bench_dir), names(args.methods), names(args.backbones))
    if table.empty:
        print(f"mixmim-bench: error: no benchmark rows in {bench_dir} (run `mixmim-bench bench --output "
              f"{args.output}` first)", file=sys.stderr)
        return 3  # nothing to report (experiments.errors.EXIT_REPORT), as `report` with no results
    print("\n\n".join(format_speed(table, fmt) for fmt in args.formats or ["markdown"]))
    return 0


COMMANDS = {"list": cmd_list, "show": cmd_show, "run": cmd_run, "status": cmd_status, "report": cmd_report,
            "models": cmd_models, "bench": cmd_bench, "speed": cmd_speed, "preflight": cmd_preflight}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from experiments.errors import explain

    try:
        return COMMANDS[args.command](args)
    except (Exception, KeyboardInterrupt) as err:  # expected errors become a message (experiments/errors.py)
        explained = explain(err)
        if explained is None:
            raise
        message, code = explained
        print(f"mixmim-bench: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
