"""Statistics over seeds: mean with a Student-t confidence interval, paired differences, seeds needed.

Every reproduced number of a report is a mean over seeds with a 95% interval ``mean ± t(0.975, n-1) s/√n``
(``s``: sample standard deviation, ddof=1); a difference between two arms is the mean of the per-seed
differences of the seeds both have, with the same interval over those differences (paired: what the arms
share at one seed, its data order and initial weights, cancels). One value has no interval (n = 1).

The t quantiles come from ``scipy.stats.t`` (scikit-learn depends on scipy), imported on first use so that
``import reports`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.95  # the confidence level of every interval the report prints
POWER = 0.8  # the chance that a real difference of the resolved size gives an interval excluding zero


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 2)`` = 4.303)."""
    if df < 1:
        raise ValueError(f"Student t needs df >= 1, got {df}")
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and its two-sided ``level`` interval; ``half`` None when n < 2.

    Attributes:
        mean: the mean (None when n = 0).
        sd: sample standard deviation (ddof=1), None when n < 2.
        half: half-width of the interval, ``t(1 - (1 - level)/2, n - 1) * sd / sqrt(n)``.
        n: the number of finite values used.
    """

    mean: float | None
    sd: float | None
    half: float | None
    n: int
    level: float = LEVEL

    @property
    def low(self) -> float | None:
        return None if self.half is None or self.mean is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None or self.mean is None else self.mean + self.half


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_interval(values: Iterable[float | None], level: float = LEVEL) -> Interval:
    """Mean and Student-t ``level`` interval of the finite ``values`` (None and NaN are left out)."""
    finite = _finite(values)
    n = len(finite)
    if n == 0:
        return Interval(None, None, None, 0, level)
    mean = math.fsum(finite) / n
    if n == 1:
        return Interval(mean, None, None, 1, level)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    half = t_quantile(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, sd, half, n, level)


@dataclass(frozen=True)
class Paired:
    """A paired difference ``arm - base`` over the seeds both have, and the seeds only one of them has."""

    interval: Interval
    seeds: tuple[int, ...]
    unpaired: tuple[int, ...]


def paired_difference(arm: Mapping[int, float], base: Mapping[int, float], level: float = LEVEL) -> Paired:
    """The mean of ``arm[s] - base[s]`` over the seeds ``s`` with a finite value in both, with its interval.

    Args:
        arm, base: seed -> value (one value per seed and arm).
    """
    a = {s: v for s, v in arm.items() if _finite([v])}
    b = {s: v for s, v in base.items() if _finite([v])}
    seeds = tuple(sorted(set(a) & set(b)))
    unpaired = tuple(sorted(set(a) ^ set(b)))
    return Paired(mean_interval([a[s] - b[s] for s in seeds], level), seeds, unpaired)


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """The pooled within-group standard deviation of groups with two or more values, and its degrees of
    freedom (``sum(n_i - 1)``); (None, 0) when no group has two values."""
    ss, df = 0.0, 0
    for group in groups:
        finite = _finite(group)
        if len(finite) > 1:
            mean = math.fsum(finite) / len(finite)
            ss += math.fsum((v - mean) ** 2 for v in finite)
            df += len(finite) - 1
    return (math.sqrt(ss / df), df) if df else (None, 0)


def seeds_needed(difference: float, sd: float, level: float = LEVEL, power: float = POWER,
                 max_seeds: int = 1000) -> int:
    """Seeds per arm for a paired difference of ``difference`` to give an interval excluding zero with
    probability ``power``: the least n >= 2 with
    ``(t(1-a/2, n-1) + t(power, n-1)) * sd_d / sqrt(n) <= |difference|``,
    where ``sd_d = sqrt(2) * sd`` is the spread of a difference of two independent arms of spread ``sd``
    (pairing can only make it smaller, so this is an upper bound).

    Raises:
        ValueError: ``difference`` or ``sd`` not positive, or more than ``max_seeds`` would be needed.
    """
    if not difference or sd <= 0:
        raise ValueError(f"seeds_needed wants a non-zero difference and a positive spread, got {difference}, {sd}")
    sd_d = math.sqrt(2.0) * sd
    for n in range(2, max_seeds + 1):
        t_sum = t_quantile(1 - (1 - level) / 2, n - 1) + t_quantile(power, n - 1)
        if t_sum * sd_d / math.sqrt(n) <= abs(difference):
            return n
    raise ValueError(f"a difference of {difference:g} at spread {sd:g} needs more than {max_seeds} seeds")
