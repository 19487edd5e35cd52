"""``mixmim-bench preflight EXP``: every distinct stage shape of an experiment, built as the run builds it and
stepped ``K`` times on real JPEGs, measured, before a GPU-hour is spent.

For each chain (:mod:`experiments.preflight.shapes`) a scratch run folder ``_preflight/scratch/<chain>/`` (or
``<--scratch>/<experiment>/<chain>/``) holds what its stages hand each other (BEiT's tokenizer,
``pretrain/encoder.pth``) and the checkpoints they write; it is removed when its chain is done. The stages of a
chain run in one process of their own (:mod:`experiments.preflight.worker`), in order; a failed tokenizer
or pre-training blocks the stages after it. The rows (JSON lines, appended) and the table of this preflight
(``preflight.md``) go to ``<output>/<experiment>/_preflight/``; logs to ``_preflight/logs/``. No run folder is
created or written.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.preflight.configure import PreflightData, needs_coco, needs_imagenet, stage_setup
from experiments.preflight.data import coco_like, imagenet_like
from experiments.preflight.failures import config_key, failure_line
from experiments.preflight.projection import project
from experiments.preflight.report import preflight_markdown
from experiments.preflight.rows import ROWS, preflight_dir, recipe_batch
from experiments.preflight.shapes import Chain, StageShape, plan_chains
from mixmim.config import RunConfig, to_yaml
from mixmim.runs.rundir import atomic_write_json, atomic_write_text, read_json

TOKENIZER_CELLS = 49  # the fewest k-means cells one generated image gives (7 x 7 at 224 px, the 32-px grid)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the worker imports this checkout, as this process does


@dataclass
class PreflightOptions:
    """``steps``: optimizer steps per stage (K); ``batch_size``: per-rank batch of every stage (None: the
    recipe's); ``gpu``: the GPU the projections are for; ``keep_scratch``: keep the scratch run folders;
    ``scratch``: where they go (None: ``_preflight/scratch``; a RAM filesystem spares the disk the checkpoints,
    which the stages still write through their own code)."""

    steps: int = 2
    batch_size: int | None = None
    gpu: str = "A100"
    keep_scratch: bool = False
    scratch: Path | None = None


@dataclass
class PreflightResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    markdown: str = ""
    folder: Path | None = None

    @property
    def ok(self) -> bool:
        return all(r["status"] == "passed" for r in self.rows)

    def failures(self) -> list[str]:
        return [failure_line(r) for r in self.rows if r["status"] != "passed"]


def prepare_data(runs: list[RunConfig], folder: Path, opts: PreflightOptions) -> PreflightData:
    """Generate the JPEG data the runs lack (once; reused by later preflights)."""
    data = PreflightData()
    stages = {s for cfg in runs for s in cfg.stages}
    if any(needs_imagenet(cfg) for cfg in runs):
        biggest = max([opts.batch_size or recipe_batch(cfg, s) or 1 for cfg in runs for s in cfg.stages] + [16])
        # BEiT's k-means tokenizer needs a cell per code: at least vocab_size / 49 images (7x7 32-px cells at 224 px)
        codes = [cfg.method.vocab_size for cfg in runs if "tokenizer" in cfg.stages]
        biggest = max([biggest] + [-(-v // TOKENIZER_CELLS) for v in codes])
        data.imagenet = imagenet_like(folder / "data" / "imagenet-like", train_images=biggest)
    if "coco" in stages and any(needs_coco(cfg, "coco") for cfg in runs):
        biggest = max([opts.batch_size or recipe_batch(cfg, "coco") or 1 for cfg in runs] + [8])
        data.coco = coco_like(folder / "data" / "coco-like", train_images=biggest)
    return data


def stage_head(shape: StageShape, chain: Chain, opts: PreflightOptions) -> dict[str, Any]:
    """What every row of ``shape`` starts with: when, which shape, which runs."""
    _, method, backbone, img_size, coco_size = shape.key
    return {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "experiment": shape.cfg.experiment, "chain": chain.name, "stage": shape.stage, "method": method,
            "backbone": backbone, "img_size": img_size, "coco_img_size": coco_size, "runs": shape.runs,
            "steps": opts.steps, "gpu": opts.gpu}  # fmt: skip


def run_chain(chain: Chain, run_dir: Path, data: PreflightData, folder: Path, opts: PreflightOptions,
              runs: dict[str, RunConfig], output: Path) -> list[dict[str, Any]]:  # fmt: skip
    """Run the chain's stages in one worker process; the full row of each (measurements and projections, or
    why it failed: a stage without a row died with the process, the ones after it are blocked)."""
    specs_dir, logs = folder / "specs", folder / "logs"
    specs_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    setups, specs = [], []
    for shape in chain.shapes:
        setup = stage_setup(shape.cfg, shape.stage, opts.steps, opts.batch_size, data, run_dir)
        name = f"{chain.name}-{shape.stage}"
        atomic_write_text(specs_dir / f"{name}.yaml", to_yaml(setup.cfg))
        row_path = specs_dir / f"{name}.row.json"
        row_path.unlink(missing_ok=True)
        generated = data.imagenet is not None and setup.cfg.data.root == str(data.imagenet)
        specs.append({"stage": shape.stage, "config": str(specs_dir / f"{name}.yaml"), "run_dir": str(run_dir),
                      "row": str(row_path), "standin": str(setup.standin) if setup.standin else None,
                      "generated_data": generated})  # fmt: skip
        setups.append(setup)
    atomic_write_json(specs_dir / f"{chain.name}.json", {"stages": specs})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    log = logs / f"{chain.name}.log"
    with open(log, "w") as out:
        command = [sys.executable, "-m", "experiments.preflight.worker", str(specs_dir / f"{chain.name}.json")]
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    died = f"the preflight process died (exit {code}" + (f", killed by signal {-code})" if code < 0 else ")")
    rows = []
    for shape, setup, spec in zip(chain.shapes, setups, specs):
        path = Path(spec["row"])
        row = read_json(path) if path.is_file() else {"status": "failed", "notes": [], "error": died}
        if not path.is_file():
            died = "an earlier stage of this chain killed the process"
        row = {**stage_head(shape, chain, opts), **row, "notes": [*setup.notes, *row.get("notes", [])],
               "warnings": setup.warnings, "log": str(log)}  # fmt: skip
        if row["status"] == "failed":
            row["config_key"] = config_key(shape.stage, row.get("error", ""))
        elif row["status"] == "passed":
            row.update(project(row, shape.cfg, [runs[n] for n in shape.runs], shape.stage, opts.gpu, output))
        rows.append(row)
    return rows


def run_preflight(runs: list[RunConfig], experiment_dir: Path, output: Path, opts: PreflightOptions,
                  title: str, progress=print) -> PreflightResult:  # fmt: skip
    """Check every stage shape of ``runs`` (see the module docstring); rows and table in ``_preflight/``."""
    folder = preflight_dir(experiment_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = prepare_data(runs, folder, opts)
    by_name = {cfg.name: cfg for cfg in runs}
    result = PreflightResult(folder=folder)
    scratch = opts.scratch / experiment_dir.name if opts.scratch else folder / "scratch"
    for chain in plan_chains(runs):
        run_dir = scratch / chain.name
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        progress(f"preflight {chain.name}: {', '.join(s.stage for s in chain.shapes)} ...")
        rows = run_chain(chain, run_dir, data, folder, opts, by_name, output)
        for row in rows:
            said = f": {row.get('error')}" if row["status"] != "passed" else ""
            progress(f"  {row['stage']}: {row['status']}{said}")
        result.rows += rows
        if not opts.keep_scratch:
            shutil.rmtree(run_dir, ignore_errors=True)
    if opts.scratch and not opts.keep_scratch and scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()
    with open(folder / ROWS, "a") as f:
        f.writelines(json.dumps(row, default=str) + "\n" for row in result.rows)
    result.markdown = preflight_markdown(result.rows, title)
    atomic_write_text(folder / "preflight.md", result.markdown)
    return result
