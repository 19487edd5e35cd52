"""From an experiment to launched stages: run directories, validation, stage chains, ``slurm.launch``."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.budget import Budget, apply_budget
from experiments.spec import Experiment, normalize_stages
from experiments.stages import RANK_PRELOAD, STAGES
from mixmim.config import LaunchConfig, RunConfig, apply_overrides, load_yaml, to_yaml, validate
from mixmim.runs.rundir import (
    CONFIG_FILE,
    PREVIOUS_CONFIG_FILE,
    SIBLING_INIT,
    append_to_manifest,
    atomic_write_text,
    done_stages,
    sibling_encoder,
    update_manifest,
)
from mixmim.weights.init_source import InitWeightsError, resolve_init
from slurm import LaunchReport, RunSpec, StageSpec, launch
from slurm.records import now_iso

log = logging.getLogger(__name__)


class RunSetupError(ValueError):
    """A run cannot start as configured; the message names the run, the problem and the fix."""


class MissingSiblingsError(RunSetupError):
    """Runs of the own fine-tuning protocol whose shared-protocol sibling has not pre-trained its encoder yet.

    Attributes:
        missing: the sibling run's name -> the encoder file it has not written yet.
    """

    def __init__(self, experiment: str, missing: dict[str, Path]) -> None:
        self.experiment, self.missing = experiment, missing
        super().__init__(self.message(f"`mixmim-bench run {experiment}` (the shared protocol) with the same "
                                      "--variant, --seeds, --only and --output"))

    def message(self, first: str) -> str:
        """The error naming each missing encoder once, then ``first``: what to run before."""
        runs = "\n".join(f"  {name} ({path})" for name, path in self.missing.items())
        return (f"{len(self.missing)} run(s) of the shared fine-tuning protocol have not pre-trained the encoder "
                f"that the own protocol fine-tunes:\n{runs}\nrun them first: {first}")


def experiment_dir(output: Path, exp: Experiment) -> Path:
    """``<output>/<experiment>`` (``<experiment>-<variant>`` for the debug and small variants, so results never
    mix)."""
    return Path(output) / (exp.name if exp.variant == "full" else f"{exp.name}-{exp.variant}")


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
    data roots, unusable ``init``, a ``coco`` stage whose engine cannot run here (:func:`check_coco_engine`)."""
    validate(cfg)
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise RunSetupError(f"run '{cfg.name}': unknown stage(s) {unknown}; stages are {list(STAGES)}")
    if cfg.data.dataset == "folder" and not cfg.data.root:
        raise RunSetupError(f"run '{cfg.name}' reads an ImageFolder dataset but data.root is empty: pass "
                            "--set data.root=/path/to/imagenet (with train/ and val/ inside)")
    if cfg.data.dataset == "folder" and not Path(cfg.data.root).is_dir():
        raise RunSetupError(f"run '{cfg.name}': data.root={cfg.data.root} is not a directory: pass "
                            "--set data.root=DIR, an ImageFolder root with train/ and val/ inside (ImageNet; "
                            "transfer-classification reads $MIXMIM_TRANSFER_ROOT/<dataset>)")
    evaluates = [s for s in cfg.stages if s not in ("tokenizer", "pretrain")]
    if not evaluates:
        return
    try:  # the stages' own rule; the run's pre-training, when planned, writes the encoder first
        resolve_init(cfg.init, run_dir, cfg.seed, pretrain_planned="pretrain" in cfg.stages)
    except InitWeightsError as err:
        sibling = cfg.init.startswith(SIBLING_INIT)
        if sibling and set(evaluates) <= set(done_stages(run_dir)):
            pass  # finished already: relaunching it is a no-op, whatever became of the sibling's encoder
        elif sibling:  # the own fine-tuning protocol: the shared protocol's run pre-trains this encoder
            try:
                path = sibling_encoder(cfg.init, run_dir, cfg.seed)
            except ValueError:  # a malformed run:<base>
                raise RunSetupError(f"run '{cfg.name}': {err}") from None
            raise MissingSiblingsError(cfg.experiment, {path.parent.parent.name: path}) from None
        else:
            raise RunSetupError(f"run '{cfg.name}' evaluates an encoder ({', '.join(evaluates)}): {err} "
                                "(--set init=VALUE)") from None
    check_coco_engine(cfg, run_dir)


def check_coco_engine(cfg: RunConfig, run_dir: Path) -> None:
    """A ``coco`` stage still to run with ``coco.engine=detectron2`` needs a working detectron2 here (the stage
    checks again where it runs): :func:`mixmim.transfer.detectron2.check_detectron2`, with CUDA ops where the
    stage trains on CUDA (Slurm runs with ``launch.gpus_per_node > 0``; local runs where CUDA is available)."""
    if "coco" not in cfg.stages or cfg.coco.engine != "detectron2" or "coco" in done_stages(run_dir):
        return
    from mixmim.transfer.detectron2 import check_detectron2

    problems = check_detectron2(cuda=_stage_uses_cuda(cfg))
    if problems:
        raise RunSetupError(f"run '{cfg.name}' (coco.engine=detectron2): " + "\n".join(problems))


# The stages whose training loader decodes ``data.decode=gpu`` batches in the step (``loader_collate``).
DECODING_STAGES = ("pretrain", "linprobe")  # a finetune stage refuses data.decode=gpu (config)


def check_decode_here(cfg: RunConfig, run_dir: Path, executor: str) -> None:
    """``data.decode=gpu`` with a stage still to run in this process's machine (``local``/``debug`` executor)
    needs CUDA here: :func:`mixmim.data.gpu_decode.check_decode_device` (which ``MIXMIM_DECODE_ON_CPU=1``
    overrides); a Slurm run is checked on its node, where the stage runs."""
    if cfg.data.decode != "gpu" or executor == "slurm":
        return
    if not set(cfg.stages) & set(DECODING_STAGES) - set(done_stages(run_dir)):
        return
    import torch

    from mixmim.data.gpu_decode import DecodeDeviceError, check_decode_device

    try:
        check_decode_device("cuda" if torch.cuda.is_available() else "cpu")
    except DecodeDeviceError as err:
        raise RunSetupError(f"run '{cfg.name}' ({executor} executor, no CUDA here): {err}") from None


def _stage_uses_cuda(cfg: RunConfig) -> bool:
    if cfg.launch.gpus_per_node > 0:
        return True
    if cfg.launch.executor == "slurm":
        return False
    import torch

    return torch.cuda.is_available()


@dataclass
class ConfigCheck:
    """How a run folder's config relates to the requested one.

    Attributes:
        action: ``new`` (no config yet), ``same``, ``upgrade`` (the folder's config predates keys that a newer
            version added, and with those at their defaults it is the requested one: rewritten, results kept),
            ``replace`` (differs, but no stage has a result: the folder takes the new config), ``force``
            (differs, stages have results, ``--force-config``).
        diff: the unified diff, existing -> requested (empty unless the configs differ).
        done: stages with a result.
        added: for ``upgrade``, the dotted keys the folder's config lacks (each at its default).
    """

    action: str
    diff: str = ""
    done: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def note(self) -> str:
        """A phrase for the plan, empty when there is nothing to say."""
        if self.action == "upgrade":
            return (f"config.yaml predates keys that take their defaults ({', '.join(self.added)}), rewritten with "
                    f"them (old one kept as {PREVIOUS_CONFIG_FILE})")  # fmt: skip
        if self.action == "replace":
            return ("config changed, no stage result yet: the new config replaces it (old one kept as "
                    f"{PREVIOUS_CONFIG_FILE})")  # fmt: skip
        if self.action == "force":
            return (f"config changed after results of {', '.join(self.done)} (--force-config): the stages not "
                    "yet done use the new one")  # fmt: skip
        return ""


def _with_new_defaults(path: Path) -> str | None:
    """``path``'s config with every key it lacks at this version's default (None: it no longer loads)."""
    try:
        return to_yaml(load_yaml(path))
    except Exception:  # a removed key or a value this version refuses: the text comparison stands
        return None


def _dotted_keys(text: str) -> set[str]:
    """The dotted leaf keys of a config.yaml text (``data.decode``)."""
    def walk(node: Any, prefix: str) -> list[str]:
        if not isinstance(node, dict):
            return [prefix]
        return [k for key, value in node.items() for k in walk(value, f"{prefix}{key}.")] if node else [prefix]

    return {k.rstrip(".") for k in walk(yaml.safe_load(text) or {}, "")}


def check_config(cfg: RunConfig, run_dir: Path, force_config: bool = False) -> ConfigCheck:
    """Whether ``cfg`` may run in ``run_dir``: a folder's config is fixed by its first *result*.

    Raises:
        RunSetupError: the folder holds stage results made with a different config and ``force_config`` is
            False (results are never mixed silently).
    """
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return ConfigCheck("new")
    existing, text = path.read_text(), to_yaml(cfg)
    if existing == text:
        return ConfigCheck("same")
    lines = list(difflib.unified_diff(existing.splitlines(True), text.splitlines(True), "existing", "requested", n=0))
    diff = "".join(lines[2:14])
    done = done_stages(run_dir)
    if _with_new_defaults(path) == text:
        return ConfigCheck("upgrade", diff, done, sorted(_dotted_keys(text) - _dotted_keys(existing)))
    if not done:
        return ConfigCheck("replace", diff)
    if force_config:
        return ConfigCheck("force", diff, done)
    raise RunSetupError(
        f"{run_dir} holds results of run '{cfg.name}' ({', '.join(done)}) made with a different config:\n{diff}"
        "Use another --output; or pass --force-config to run the stages not yet done with the new config (the "
        "change is recorded in manifest.json); or delete the folder to start over."
    )


def prepare_run_dir(cfg: RunConfig, run_dir: Path, variant: str, budget: dict[str, Any] | None = None,
                    force_config: bool = False) -> ConfigCheck:  # fmt: skip
    """Check and write ``config.yaml`` and the run's identity into ``manifest.json``.

    Call it holding the run's lock (:class:`mixmim.runs.rundir.RunLock`; the launcher does, ``RunSpec.prepare``),
    so that the check and the write are one step no other launch can interleave with.

    Raises:
        RunSetupError: the folder holds results made with a different config (see :func:`check_config`).
    """
    check = check_config(cfg, run_dir, force_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    if check.action in ("upgrade", "replace", "force"):
        os.replace(path, run_dir / PREVIOUS_CONFIG_FILE)
        log.warning("%s: %s", cfg.name, check.note())
        change = {"at": now_iso(), "action": check.action, "stages_done": check.done, "diff": check.diff,
                  "previous": PREVIOUS_CONFIG_FILE}  # fmt: skip
        append_to_manifest(run_dir, "config_changes", change)
    if check.action != "same":
        atomic_write_text(path, to_yaml(cfg))
    identity = {"experiment": cfg.experiment, "run": cfg.name, "method": cfg.method.name,
                "backbone": cfg.model.backbone, "setting": cfg.setting, "seed": cfg.seed, "variant": variant,
                "stages_planned": cfg.stages, "init": cfg.init}
    if budget:
        identity["budget"] = budget
    update_manifest(run_dir, identity)
    return check


def run_specs(exp: Experiment, output: Path, budget: Budget | None = None, write: bool = True,
              force_config: bool = False, executor: str | None = None) -> list[RunSpec]:  # fmt: skip
    """Validated stage chains of every run, each with its config check (``RunSpec.prepare`` writes the run
    directory under the run's lock when ``write``; without it, nothing is written).

    ``executor`` (``run --executor``) replaces each run's ``launch.executor`` for :func:`check_decode_here`.

    Raises:
        RunSetupError: a run cannot start (bad stages, data root or init, GPU decoding without CUDA), or its
            folder holds results made with a different config: checked for every run before anything launches
            (``--dry-run`` too).
    """
    records = apply_budget(exp.runs, budget, Path(output))
    specs, missing = [], {}
    for cfg in exp.runs:
        run_dir = experiment_dir(output, exp) / cfg.name
        try:
            validate_run(cfg, run_dir)
        except MissingSiblingsError as err:  # every run's, in one message
            missing.update(err.missing)
            continue
        check_decode_here(cfg, run_dir, executor or cfg.launch.executor)
        check_config(cfg, run_dir, force_config)  # fail before anything launches; checked again under the lock
        prepare = None
        if write:
            prepare = functools.partial(prepare_run_dir, cfg, run_dir, exp.variant, records.get(cfg.name), force_config)
        stages = [StageSpec(name=s, fn=STAGES[s], cfg=cfg, preload=RANK_PRELOAD) for s in cfg.stages]
        specs.append(RunSpec(run_dir=run_dir, name=cfg.name, prepare=prepare, stages=stages))
    if missing:
        raise MissingSiblingsError(exp.name, missing)
    return specs


def dry_run_plan(exp: Experiment, output: Path, budget: Budget | None = None, force_config: bool = False,
                 executor: str | None = None) -> list[str]:  # fmt: skip
    """One line per run, ``run: stages (folder)`` plus what would happen to its config; writes nothing.

    Raises:
        RunSetupError: as ``run`` would (the same validation and config checks).
    """
    specs = run_specs(exp, output, budget, write=False, force_config=force_config, executor=executor)
    lines = []
    for cfg, spec in zip(exp.runs, specs):
        note = check_config(cfg, spec.run_dir, force_config).note()
        line = f"{spec.name}: {' -> '.join(s.name for s in spec.stages)}  ({spec.run_dir})"
        lines.append(line + (f"\n  {note}" if note else ""))
    return lines


def launch_experiment(exp: Experiment, output: Path, executor: str | None = None, budget: Budget | None = None,
                      force_config: bool = False, takeover: bool = False) -> LaunchReport:  # fmt: skip
    """Prepare and launch every stage of every run (skipping done stages, resuming partial ones, leaving runs
    that another live launch holds to it).

    Each run launches with its own ``launch`` section (ranks, Slurm resources); ``executor`` (``run
    --executor``) replaces only where the stages run, for every run alike, and is not written into any run's
    ``config.yaml`` (where a run executes is not part of what it is). Runs with equal launch sections are
    launched together (one Slurm submission, job arrays).
    """
    specs = run_specs(exp, output, budget, force_config=force_config, executor=executor)
    log_dir = experiment_dir(output, exp) / "_logs"
    groups: dict[str, tuple[LaunchConfig, list[RunSpec]]] = {}
    for cfg, spec in zip(exp.runs, specs):
        launch_cfg = dataclasses.replace(cfg.launch, executor=executor or cfg.launch.executor)
        groups.setdefault(repr(launch_cfg), (launch_cfg, []))[1].append(spec)
    reports = [launch(group, launch_cfg, log_dir, takeover=takeover) for launch_cfg, group in groups.values()]
    if len(reports) == 1:
        return reports[0]
    merged = LaunchReport(" + ".join(dict.fromkeys(r.executor for r in reports)))
    for report in reports:
        merged.stages += report.stages
        merged.jobs.update(report.jobs)
    return merged
