"""``--only PATTERN``: keep the runs of an experiment whose names match any of the glob patterns."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from experiments.spec import Experiment
from mixmim.config import ConfigError


def matching_runs(names: Sequence[str], patterns: Sequence[str], experiment: str = "") -> list[str]:
    """The names matching any pattern (shell globs, case-sensitive), in their order.

    Raises:
        ConfigError: a pattern matches no name; the message lists the names.
    """
    unmatched = [p for p in patterns if not any(fnmatchcase(n, p) for n in names)]
    if unmatched:
        where = f" of '{experiment}'" if experiment else ""
        raise ConfigError(f"--only {', '.join(repr(p) for p in unmatched)} matches no run{where}; runs: "
                          f"{', '.join(names)}")
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def only_runs(exp: Experiment, patterns: Sequence[str] | None) -> Experiment:
    """``exp`` with only the runs matching ``patterns`` (all of them when there are none)."""
    if patterns:
        keep = set(matching_runs([cfg.name for cfg in exp.runs], patterns, exp.name))
        exp.runs = [cfg for cfg in exp.runs if cfg.name in keep]
    return exp
