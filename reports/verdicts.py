"""A paper's finding as data, and its verdict on reproduced results: holds, contradicted or inconclusive.

A :class:`Finding` is a set of comparisons ``better > worse`` between rows of one table (row labels, as
``TableSpec.row_order`` names them) on one stage metric. The rule (docs/statistics.md, "Verdicts"): each
comparison is the paired difference ``better - worse`` over the seeds both rows have, with its 95% Student-t
interval (:func:`reports.stats.paired_difference`); it holds when the interval lies above zero, is
contradicted when it lies below zero, and is inconclusive otherwise (an interval that holds zero, one seed, or
a row without results). The finding is contradicted when any comparison is, holds when every comparison
holds, and is inconclusive otherwise; the verdict names the comparison that decided it (for ``holds`` the
weakest, for ``contradicted`` the clearest, for ``inconclusive`` the first that was not decided).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reports.stats import LEVEL, Paired, paired_difference

HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Finding:
    """A claim of a paper about the rows of a table, checked on ``stage``/``metric``.

    Attributes:
        claim: the claim in words ("mask ratio 0.5 is best").
        source: where the paper makes it.
        comparisons: ``(better, worse)`` row labels; the claim is that every ``better`` row beats its ``worse``.
        stage, metric: the table column the comparisons read.
        higher_is_better: False for losses.
    """

    claim: str
    source: str
    comparisons: tuple[tuple[str, str], ...]
    stage: str = "finetune"
    metric: str = "top1"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not self.comparisons or not str(self.source).strip():
            raise ValueError(f"finding '{self.claim}' needs at least one comparison and a source")

    @classmethod
    def best(cls, claim: str, source: str, arm: str, others: Sequence[str], **kwargs) -> Finding:
        """``arm`` beats every row of ``others``."""
        return cls(claim, source, tuple((str(arm), str(o)) for o in others), **kwargs)

    @classmethod
    def ordering(cls, claim: str, source: str, arms: Sequence[str], **kwargs) -> Finding:
        """``arms[0] > arms[1] > ...``: each neighbour pair."""
        return cls(claim, source, tuple((str(a), str(b)) for a, b in zip(arms, arms[1:])), **kwargs)


@dataclass(frozen=True)
class Comparison:
    """One ``better - worse`` comparison of a finding and its state (``paired`` None: a row has no results)."""

    better: str
    worse: str
    paired: Paired | None
    state: str

    def text(self, digits: int = 2) -> str:
        """``0.5 - 0.75 = +0.42 [95% CI +0.10, +0.74], n=3`` (or why there is no interval)."""
        head = f"{self.better} - {self.worse}"
        if self.paired is None or self.paired.interval.mean is None:
            return f"{head}: no seed with results in both rows"
        iv = self.paired.interval
        if iv.half is None:
            return f"{head} = {iv.mean:+.{digits}f}, n=1: no interval"
        return (f"{head} = {iv.mean:+.{digits}f} [{iv.level:.0%} CI {iv.low:+.{digits}f}, {iv.high:+.{digits}f}], "
                f"n={iv.n}")


@dataclass(frozen=True)
class Verdict:
    """The state of a finding and the comparison that decided it."""

    finding: Finding
    state: str
    decided_by: Comparison
    comparisons: tuple[Comparison, ...]

    def text(self, digits: int = 2) -> str:
        """One line: state, claim, deciding interval, column and source."""
        f = self.finding
        return (f"{self.state}: {f.claim} ({f.stage} {f.metric}; decided by {self.decided_by.text(digits)}; "
                f"source: {f.source})")


def _compare(better: str, worse: str, values: Mapping[str, Mapping[int, float]], sign: float) -> Comparison:
    if better not in values or worse not in values:
        return Comparison(better, worse, None, INCONCLUSIVE)
    signed = {label: {s: sign * v for s, v in values[label].items()} for label in (better, worse)}
    paired = paired_difference(signed[better], signed[worse], LEVEL)
    iv = paired.interval
    if iv.low is not None and iv.low > 0:
        state = HOLDS
    elif iv.high is not None and iv.high < 0:
        state = CONTRADICTED
    else:
        state = INCONCLUSIVE
    return Comparison(better, worse, paired if iv.mean is not None else None, state)


def decide(finding: Finding, values: Mapping[str, Mapping[int, float]]) -> Verdict:
    """The verdict of ``finding`` on ``values`` (row label -> seed -> value of the finding's column)."""
    sign = 1.0 if finding.higher_is_better else -1.0
    comps = tuple(_compare(b, w, values, sign) for b, w in finding.comparisons)
    contradicted = [c for c in comps if c.state == CONTRADICTED]
    if contradicted:
        return Verdict(finding, CONTRADICTED, min(contradicted, key=lambda c: c.paired.interval.high), comps)
    if all(c.state == HOLDS for c in comps):
        return Verdict(finding, HOLDS, min(comps, key=lambda c: c.paired.interval.low), comps)
    return Verdict(finding, INCONCLUSIVE, next(c for c in comps if c.state == INCONCLUSIVE), comps)
