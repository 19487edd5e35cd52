"""``mixmim-bench list`` answers from experiments.catalog: the table must equal what the definitions build."""

from __future__ import annotations

import pytest

from experiments.catalog import CATALOG
from experiments.registry import EXPERIMENTS, get_experiment


def test_catalog_names_every_experiment_in_order() -> None:
    assert list(CATALOG) == list(EXPERIMENTS)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_catalog_matches_definition(name: str) -> None:
    full, debug = get_experiment(name, "full"), get_experiment(name, "debug")
    assert CATALOG[name] == (full.description, len(full.runs), len(debug.runs))
