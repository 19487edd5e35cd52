"""Intervals, paired differences, seeds needed and verdicts against hand-computed values."""

from __future__ import annotations

import math

import pytest

from reports.stats import mean_interval, paired_difference, pooled_sd, seeds_needed, t_quantile
from reports.verdicts import CONTRADICTED, HOLDS, INCONCLUSIVE, Finding, decide

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (printed t tables: 4.303)


def test_t_quantiles_match_printed_tables() -> None:
    assert t_quantile(0.975, 2) == pytest.approx(T_975_2)
    assert t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.975, 3) == pytest.approx(3.182, abs=1e-3)


def test_mean_interval_by_hand() -> None:
    iv = mean_interval([1.0, 2.0, 3.0, None, math.nan])  # None and NaN are not values
    assert (iv.mean, iv.sd, iv.n) == (2.0, 1.0, 3)
    assert iv.half == pytest.approx(T_975_2 / math.sqrt(3))  # 2.4841
    assert (iv.low, iv.high) == (pytest.approx(2 - 2.48414, abs=1e-5), pytest.approx(2 + 2.48414, abs=1e-5))
    one = mean_interval([84.1])
    assert (one.mean, one.sd, one.half, one.n, one.low) == (84.1, None, None, 1, None)
    assert mean_interval([]).mean is None


def test_paired_difference_by_hand() -> None:
    arm = {0: 1.0, 1: 2.0, 2: 4.0}
    base = {0: 0.5, 1: 1.0, 2: 3.0, 3: 9.0}  # seed 3 has no partner: left out
    paired = paired_difference(arm, base)
    assert paired.seeds == (0, 1, 2) and paired.unpaired == (3,)
    iv = paired.interval  # differences 0.5, 1.0, 1.0: mean 5/6, sd sqrt(1/12)
    assert iv.mean == pytest.approx(5 / 6)
    assert iv.sd == pytest.approx(math.sqrt(1 / 12))
    assert iv.half == pytest.approx(T_975_2 * math.sqrt(1 / 12) / math.sqrt(3))  # 0.7171


def test_pooled_sd_and_seeds_needed_by_hand() -> None:
    sd, df = pooled_sd([[1.0, 3.0], [2.0, 2.0, 5.0], [7.0]])  # SS 2 + 6 over df 1 + 2; one value adds nothing
    assert (sd, df) == (pytest.approx(math.sqrt(8 / 3)), 3)
    assert pooled_sd([[1.0]]) == (None, 0)
    # sd 0.08, paired sd sqrt(2)*0.08 = 0.1131: n=3 gives (4.303 + 1.061) * 0.1131 / sqrt(3) = 0.350 > 0.3,
    # n=4 gives (3.182 + 0.978) * 0.1131 / 2 = 0.235 <= 0.3
    assert seeds_needed(0.3, 0.08) == 4
    assert seeds_needed(0.05, 0.08) > seeds_needed(0.3, 0.08)
    with pytest.raises(ValueError, match="positive spread"):
        seeds_needed(0.3, 0.0)


FINDING = Finding.best("0.5 is best", "test", "0.5", ["0.25", "0.75"])


def test_verdict_holds_with_the_weakest_interval() -> None:
    values = {"0.5": {0: 85.0, 1: 85.2, 2: 85.1}, "0.25": {0: 84.0, 1: 84.1, 2: 84.1},
              "0.75": {0: 84.8, 1: 85.0, 2: 84.8}}
    verdict = decide(FINDING, values)
    assert verdict.state == HOLDS
    assert (verdict.decided_by.better, verdict.decided_by.worse) == ("0.5", "0.75")  # the smaller margin
    assert "0.5 - 0.75 = +0.23 [95% CI" in verdict.text() and "n=3" in verdict.text()


def test_verdict_contradicted_by_one_comparison() -> None:
    values = {"0.5": {0: 85.0, 1: 85.2, 2: 85.1}, "0.25": {0: 84.0, 1: 84.1, 2: 84.1},
              "0.75": {0: 86.0, 1: 86.1, 2: 86.3}}
    verdict = decide(FINDING, values)
    assert verdict.state == CONTRADICTED and verdict.decided_by.worse == "0.75"
    assert verdict.decided_by.paired.interval.high < 0


@pytest.mark.parametrize("values, why", [
    ({"0.5": {0: 85.0, 1: 84.0, 2: 86.0}, "0.25": {0: 84.9, 1: 84.5, 2: 85.0}, "0.75": {0: 80.0, 1: 81.0, 2: 80.5}},
     "CI"),  # the 0.25 interval holds zero
    ({"0.5": {0: 85.0}, "0.25": {0: 84.0}, "0.75": {0: 80.0}}, "n=1: no interval"),
    ({"0.5": {0: 85.0, 1: 85.2}, "0.75": {0: 80.0, 1: 80.1}}, "no seed with results"),  # 0.25 has no results
])
def test_verdict_inconclusive(values: dict, why: str) -> None:
    verdict = decide(FINDING, values)
    assert verdict.state == INCONCLUSIVE and why in verdict.decided_by.text()
    assert verdict.text().startswith("inconclusive: 0.5 is best (finetune top1; decided by 0.5 - 0.25")


def test_lower_is_better_and_ordering() -> None:
    loss = Finding.ordering("a < b < c", "test", ["a", "b", "c"], stage="pretrain", metric="loss",
                            higher_is_better=False)
    assert loss.comparisons == (("a", "b"), ("b", "c"))
    values = {"a": {0: 0.1, 1: 0.11}, "b": {0: 0.5, 1: 0.52}, "c": {0: 0.9, 1: 0.93}}
    assert decide(loss, values).state == HOLDS
