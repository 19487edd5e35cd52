"""``show EXP --cost --resolve D``: how many seeds a difference of ``D`` needs, and what they cost.

The spread is, in order: ``--spread SD``; the spread measured by the experiment's own results (the pooled
within-arm standard deviation of its first table's first column, over arms with two or more seeds); else the
published seed-to-seed spread of ImageNet fine-tuning top-1, MAE's four fine-tuning seeds of ViT-B (83.57 ± 0.08,
``mae_vit_b_1600ep_top1_4seeds`` in ``reports/references/baselines.yaml``). The seeds come from
:func:`reports.stats.seeds_needed` (paired 95% interval, 80% chance to exclude zero); their cost is the
projected GPU-hours of one seed of every run, times the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.spec import Experiment

DEFAULT_SPREAD_KEY = "mae_vit_b_1600ep_top1_4seeds"


@dataclass(frozen=True)
class Spread:
    """A seed-to-seed standard deviation and where it comes from."""

    sd: float
    source: str


def published_spread() -> Spread:
    """MAE's fine-tuning spread over four seeds (the reference file's entry, with its source)."""
    from reports.references import load_references

    ref = load_references().values[DEFAULT_SPREAD_KEY]
    return Spread(float(ref.std), f"published: {ref.what or ref.key}, {ref.value:g} ± {ref.std:g} over {ref.n} "
                                  f"seeds ({ref.source})")


def measured_spread(exp: Experiment, exp_dir: Path) -> Spread | None:
    """The pooled within-arm sd of the first column of the experiment's first table, or None (no arm has two
    seeds with results yet)."""
    if not exp.tables or not exp.tables[0].columns or not Path(exp_dir).is_dir():
        return None
    from reports.results import read_results
    from reports.stats import pooled_sd

    column = exp.tables[0].columns[0]
    df = read_results(exp_dir, (column.stage,))
    done = df[(df["stage"] == column.stage) & (df["metric"] == column.metric) & (df["status"] == "done")]
    groups = [g["value"].dropna().tolist() for _, g in done.groupby(["method", "backbone", "setting"], dropna=False)]
    sd, dof = pooled_sd(groups)
    if sd is None or sd <= 0:
        return None
    arms = sum(len(g) > 1 for g in groups)
    return Spread(sd, f"measured: pooled over {arms} arm(s) of {exp_dir}, {column.stage} {column.metric}, "
                      f"{dof} degrees of freedom")


def resolve_text(exp: Experiment, exp_dir: Path, difference: float, spread: float | None,
                 run_gpu_hours: Sequence[float]) -> str:
    """The answer ``show --resolve`` prints: the spread used, seeds per arm, runs and GPU-hours.

    Args:
        run_gpu_hours: the projected GPU-hours of each run of ``exp`` (as replicated: ``exp.seeds`` seeds).
    """
    from reports.stats import LEVEL, POWER, seeds_needed

    used = (Spread(spread, "given (--spread)") if spread is not None else
            measured_spread(exp, exp_dir) or published_spread())
    n = seeds_needed(difference, used.sd)
    per_seed = sum(run_gpu_hours) / max(len(exp.seeds), 1)
    arms = len(exp.runs) // max(len(exp.seeds), 1)
    return (f"Seeds to resolve a difference of {difference:g} between two arms (a paired {LEVEL:.0%} interval that "
            f"excludes zero with {POWER:.0%} chance; spread sd {used.sd:.3g}, {used.source}): {n} seeds per arm, "
            f"{n * arms} runs ({arms} arms), {n * per_seed:,.1f} GPU-hours projected ({per_seed:,.1f} per seed of "
            "every arm).")
