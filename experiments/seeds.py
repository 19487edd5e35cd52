"""Replicates: ``--seeds N`` (seeds 0..N-1) or ``--seeds 0,3,5`` turns every run of an experiment into one run
per seed, named ``...-s<seed>``, and declares the seeds to the experiment's tables (so a missing replicate is
reported as missing, never averaged away; without ``--seeds`` a report counts every seed it finds).

The seed reaches every random stream of a run: initial weights (``baselines.build_method``, the evaluation
heads), the data order (``mixmim.data.sampler``: one permutation per ``(seed, epoch)``, the same for every
arm of an experiment at that seed), augmentation and dropout (the global generators, reseeded per rank),
the masks (the method's generator) and loader workers. Arms with the same seed therefore share their data
order and, on the same backbone, their initial encoder weights: a difference between them is paired.
"""

from __future__ import annotations

import copy
import dataclasses
import re

from experiments.spec import Experiment
from mixmim.config import ConfigError, RunConfig

_SEED_SUFFIX = re.compile(r"-s\d+$")
MAX_SEEDS = 100


def parse_seeds(text: str | int | None) -> tuple[int, ...] | None:
    """``"3"`` -> (0, 1, 2); ``"0,3,5"`` -> (0, 3, 5); None or "" -> None (the experiment's own seeds).

    Raises:
        ConfigError: not a count or a list of distinct non-negative integers.
    """
    if text is None or str(text).strip() == "":
        return None
    raw = str(text).strip()
    fix = "pass a count (--seeds 3: seeds 0, 1, 2) or a comma-separated list (--seeds 0,3,5)"
    try:
        parts = [int(p) for p in raw.split(",") if p.strip() != ""]
    except ValueError:
        raise ConfigError(f"--seeds {raw!r} is not a number or list of numbers: {fix}") from None
    if "," not in raw:
        if not 1 <= parts[0] <= MAX_SEEDS:
            raise ConfigError(f"--seeds {raw}: the count must be 1 to {MAX_SEEDS}; {fix}")
        return tuple(range(parts[0]))
    if not parts or any(p < 0 for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(f"--seeds {raw!r}: seeds must be distinct non-negative integers; {fix}")
    return tuple(parts)


def base_name(name: str) -> str:
    """A run name without its ``-s<seed>`` suffix."""
    return _SEED_SUFFIX.sub("", name)


def with_seed(cfg: RunConfig, seed: int) -> RunConfig:
    """A copy of ``cfg`` with ``seed`` and its name's ``-s<seed>`` suffix set."""
    out = copy.deepcopy(cfg)
    out.seed = seed
    out.name = base_name(cfg.name) + f"-s{seed}"
    return out


def replicate(exp: Experiment, seeds: tuple[int, ...] | None) -> Experiment:
    """``exp`` with every run once per seed (run-major: each run's seeds together).

    ``seeds`` given (``--seeds``): the tables declare them, so a report counts exactly these seeds and names
    the missing ones. None: the experiment's own seeds (``Experiment.seeds``) are run, and a report counts every
    seed it finds in the experiment's folder (``report`` after ``run --seeds 3`` shows all three).
    """
    explicit = seeds is not None
    seeds = tuple(seeds) if explicit else tuple(exp.seeds)
    if not seeds:
        raise ConfigError(f"experiment '{exp.name}' declares no seeds")
    bases = list(dict.fromkeys(base_name(cfg.name) for cfg in exp.runs))
    first = {base_name(cfg.name): cfg for cfg in reversed(exp.runs)}  # the first run of each base
    exp.runs = [with_seed(first[base], seed) for base in bases for seed in seeds]
    exp.seeds = seeds
    if explicit:
        exp.tables = [dataclasses.replace(t, seeds=seeds) for t in exp.tables]
    return exp
