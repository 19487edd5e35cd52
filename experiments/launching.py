"""From an experiment to launched stages: run directories, validation, stage chains, ``slurm.launch``."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from experiments.budget import Budget, apply_budget
from experiments.spec import Experiment, normalize_stages
from experiments.stages import STAGES
from mixmim.config import LaunchConfig, RunConfig, apply_overrides, to_yaml, validate
from mixmim.rundir import CONFIG_FILE, atomic_write_text, update_manifest
from slurm import LaunchReport, RunSpec, StageSpec, launch

log = logging.getLogger(__name__)


class RunSetupError(ValueError):
    """A run cannot start as configured; the message names the run, the problem and the fix."""


def experiment_dir(output: Path, exp: Experiment) -> Path:
    """``<output>/<experiment>`` (``<experiment>-debug`` for the debug variant, so results never mix)."""
    return Path(output) / (exp.name if exp.variant == "full" else f"{exp.name}-debug")


def apply_to_runs(exp: Experiment, overrides: list[str]) -> Experiment:
    """Apply ``--set key=value`` overrides to every run (type-checked; unknown keys fail)."""
    if overrides:
        exp.runs = [normalize_stages(_keep_name(apply_overrides(cfg, overrides), cfg)) for cfg in exp.runs]
    return exp


def _keep_name(new: RunConfig, old: RunConfig) -> RunConfig:
    new.name = old.name
    return new


def validate_run(cfg: RunConfig, run_dir: Path) -> None:
    """Fail at start, not hours later: bad values (:func:`mixmim.config.validate`), unknown stages, missing
    data roots, unusable ``init``."""
    validate(cfg)
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise RunSetupError(f"run '{cfg.name}': unknown stage(s) {unknown}; stages are {list(STAGES)}")
    if cfg.data.dataset == "folder" and not cfg.data.root:
        raise RunSetupError(f"run '{cfg.name}' reads an ImageFolder dataset but data.root is empty: pass "
                            "--set data.root=/path/to/imagenet (with train/ and val/ inside)")
    if cfg.data.dataset == "folder" and not Path(cfg.data.root).is_dir():
        raise RunSetupError(f"run '{cfg.name}': data.root={cfg.data.root} is not a directory: pass "
                            "--set data.root=/path/to/imagenet (with train/ and val/ inside)")
    evaluates = [s for s in cfg.stages if s not in ("tokenizer", "pretrain")]
    if not evaluates:
        return
    if cfg.init == "":
        raise RunSetupError(f"run '{cfg.name}' evaluates a checkpoint but none is given: pass "
                            "--set init=/path/to/checkpoint.pth (official or suite) or init=random")
    if cfg.init == "pretrain" and "pretrain" not in cfg.stages and not (run_dir / "pretrain" / "encoder.pth").is_file():
        raise RunSetupError(f"run '{cfg.name}' uses init=pretrain without a pretrain stage or "
                            f"{run_dir / 'pretrain' / 'encoder.pth'}")
    if cfg.init not in ("pretrain", "random") and not Path(cfg.init).is_file():
        raise RunSetupError(f"run '{cfg.name}': init checkpoint {cfg.init} does not exist")


def prepare_run_dir(cfg: RunConfig, run_dir: Path, variant: str, budget: dict[str, Any] | None = None) -> None:
    """Write ``config.yaml`` and the run's identity into ``manifest.json``.

    Raises:
        RunSetupError: the folder holds a run with a different config (results are never mixed or
            overwritten silently).
    """
    text = to_yaml(cfg)
    path = run_dir / CONFIG_FILE
    if path.is_file() and path.read_text() != text:
        diff = "".join(list(difflib.unified_diff(path.read_text().splitlines(True), text.splitlines(True),
                                                 "existing", "requested", n=0))[2:12])
        raise RunSetupError(f"{run_dir} holds run '{cfg.name}' with a different config:\n{diff}"
                            "Use another --output, or delete the folder to start over.")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        atomic_write_text(path, text)
    identity = {"experiment": cfg.experiment, "run": cfg.name, "method": cfg.method.name,
                "backbone": cfg.model.backbone, "setting": cfg.setting, "seed": cfg.seed, "variant": variant,
                "stages_planned": cfg.stages, "init": cfg.init}
    if budget:
        identity["budget"] = budget
    update_manifest(run_dir, identity)


def run_specs(exp: Experiment, output: Path, budget: Budget | None = None, write: bool = True) -> list[RunSpec]:
    """Validated stage chains of every run (and, with ``write``, their prepared run directories)."""
    records = apply_budget(exp.runs, budget, Path(output))
    specs = []
    for cfg in exp.runs:
        run_dir = experiment_dir(output, exp) / cfg.name
        validate_run(cfg, run_dir)
        if write:
            prepare_run_dir(cfg, run_dir, exp.variant, records.get(cfg.name))
        specs.append(RunSpec(run_dir=run_dir, name=cfg.name,
                             stages=[StageSpec(name=s, fn=STAGES[s], cfg=cfg) for s in cfg.stages]))
    return specs


def launch_experiment(exp: Experiment, output: Path, launch_cfg: LaunchConfig,
                      budget: Budget | None = None) -> LaunchReport:
    """Prepare and launch every stage of every run (skipping done stages, resuming partial ones)."""
    specs = run_specs(exp, output, budget)
    log_dir = experiment_dir(output, exp) / "_logs"
    return launch(specs, launch_cfg, log_dir)
