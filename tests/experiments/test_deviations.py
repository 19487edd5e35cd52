"""The review page's deviations: every recipe field where runs differ from their method's official recipe."""

from __future__ import annotations

import pytest

from baselines.registry import CARDS
from experiments.deviations import deviation_rows, deviation_sources
from experiments.registry import EXPERIMENTS, get_experiment
from reports.references import load_references

RECIPES = load_references().recipes


def test_smoke_deviations_are_declared_with_their_reasons():
    rows = deviation_rows(get_experiment("smoke", "full"), RECIPES)
    assert {r["method"] for r in rows} == set(CARDS)  # every method's card; random init has no recipe
    lr = next(r for r in rows if (r["method"], r["stage"], r["field"]) == ("mae", "pretrain", "lr"))
    assert (lr["ours"], lr["official"], lr["runs"]) == ("0.0015", "0.0024", 1) and "absolute lr" in lr["why"]
    assert "mae_vit_b_pretrain: MAE paper" in deviation_sources(rows, RECIPES)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_deviation_is_declared_by_its_experiment(name):
    rows = deviation_rows(get_experiment(name, "full"), RECIPES)
    assert all(r["declared"] == "by the experiment, for every method" for r in rows), rows
