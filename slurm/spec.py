"""What the launcher runs: a run is a directory and a chain of stages, each a function and its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

StageFn = Callable[[Any, Path], dict[str, Any]]


@dataclass
class StageSpec:
    """One stage of a run: ``fn(cfg, run_dir) -> metrics``.

    Attributes:
        name: the stage's folder in the run directory (``pretrain``, ``linprobe``, ...); the stage is done
            when ``<run_dir>/<name>/result.json`` exists.
        fn: a module-level function (it is pickled by reference for Slurm jobs; functions defined in a
            test module or inside another function do not unpickle in the job).
        cfg: a picklable config (a dataclass) passed to ``fn`` unchanged.
        preload: modules that local ranks import once, in the fork server they are forked from
            (:mod:`slurm.local_ranks`), instead of in every rank of every stage.
    """

    name: str
    fn: StageFn
    cfg: Any
    preload: tuple[str, ...] = ()


@dataclass
class RunSpec:
    """One run: its directory and its stages, run in order (each starts after the previous one succeeded).

    Attributes:
        prepare: called by the launcher while it holds the run's lock, before it looks at the stages (the
            experiment's config check and config write, as one locked step); None: nothing to prepare.
    """

    run_dir: Path
    stages: list[StageSpec] = field(default_factory=list)
    name: str = ""
    prepare: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).absolute()
        self.name = self.name or self.run_dir.name
        names = [stage.name for stage in self.stages]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"run '{self.name}' lists stage(s) {duplicates} more than once")


def check_runs(runs: list[RunSpec]) -> None:
    """Reject two runs with the same name or directory: their stages would overwrite each other.

    Raises:
        ValueError: naming the clashing runs.
    """
    for attribute in ("name", "run_dir"):
        values = [getattr(run, attribute) for run in runs]
        clashes = sorted({str(value) for value in values if values.count(value) > 1})
        if clashes:
            raise ValueError(f"several runs share the same {attribute}: {clashes}")
