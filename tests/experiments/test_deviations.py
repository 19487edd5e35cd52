"""The review page's deviations: every recipe field where runs differ from their method's official recipe."""

from __future__ import annotations

from functools import reduce

import pytest

from baselines.registry import CARDS, method_finetune_defaults
from experiments.deviations import deviation_rows, deviation_sources, official_recipe
from experiments.recipe_table import FIELD_KEYS
from experiments.registry import EXPERIMENTS, get_experiment
from mixmim.config import RunConfig
from reports.references import load_references

RECIPES = load_references().recipes


def test_smoke_deviations_are_declared_with_their_reasons():
    rows = deviation_rows(get_experiment("smoke", "full"), RECIPES)
    assert {r["method"] for r in rows} == set(CARDS)  # every method's card; random init has no recipe
    lr = next(r for r in rows if (r["method"], r["stage"], r["field"]) == ("mae", "pretrain", "lr"))
    assert (lr["ours"], lr["official"], lr["planned runs"]) == ("0.0015", "0.0024", 1) and "absolute lr" in lr["why"]
    assert "mae_vit_b_pretrain: MAE paper" in deviation_sources(rows, RECIPES)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_deviation_is_declared_by_its_experiment(name):
    rows = deviation_rows(get_experiment(name, "full"), RECIPES)
    assert all(r["declared"] == "by the experiment, for every method" for r in rows), rows


FINETUNE_RECIPE = ("layer_decay", "clip_grad", "warmup_lr", "min_lr", "fc_norm", "train_pos_embed", "probe_features",
                   "probe_crop")


@pytest.mark.parametrize("backbone", ["mixmim_vit_base_patch16", "mixmim_base"])
def test_official_finetune_references_are_the_cards_recipes(backbone):
    """recipes.yaml's fine-tuning fields (and their ``hierarchical`` values) equal each card's ``finetune``."""
    official = {r.method: r for r in RECIPES.values() if r.method and r.stage == "finetune"}
    assert set(official) == set(CARDS)
    for method, ref in official.items():
        card, ref = method_finetune_defaults(method, backbone), official_recipe(ref, backbone)
        for field in FINETUNE_RECIPE:
            key = FIELD_KEYS[field][0].format(s="finetune")
            expected = card.get(key, reduce(getattr, key.split("."), RunConfig()))
            if getattr(ref, field) is not None or key in card:
                assert getattr(ref, field) == expected, (method, backbone, field)


def _rows(protocol: str, finished=None):
    exp = get_experiment("fixed-encoder", "debug", finetune_protocol=protocol)
    return {(r["method"], r["field"]): r for r in deviation_rows(exp, RECIPES, finished) if r["stage"] == "finetune"}


def test_the_shared_protocol_declares_mixmims_finetuning_recipe_for_the_others():
    rows = _rows("shared")
    for field, ours, official in (("layer_decay", "0.7", "0.65"), ("fc_norm", "False", "True"),
                                  ("train_pos_embed", "False", "True"), ("probe_features", "pooled", "cls_token"),
                                  ("probe_crop", "torchvision", "mae")):
        row = rows["mae", field]
        assert (row["ours"], row["official"]) == (ours, official)
        assert row["declared"] == "by the experiment, for every method" and "MixMIM's" in row["why"]
    assert rows["simmim", "clip_grad"]["official"] == "5"
    assert not any(m == "mixmim" and f in FINETUNE_RECIPE for m, f in rows)  # MixMIM's own recipe is the shared one
    own = _rows("own")
    assert not {f for _, f in own} & set(FINETUNE_RECIPE), own  # the own protocol trains the official values


def test_deviation_rows_count_planned_runs_and_those_with_results():
    rows = _rows("shared", finished={"mae-mixmim_tiny_32-encoderMixMIM-B-s0"})
    assert (rows["mae", "layer_decay"]["planned runs"], rows["mae", "layer_decay"]["with results"]) == (2, 1)
    assert (rows["beit", "layer_decay"]["planned runs"], rows["beit", "layer_decay"]["with results"]) == (2, 0)
    assert "with results" not in _rows("shared")["mae", "layer_decay"]


def test_the_review_page_counts_the_runs_with_results():
    import pandas as pd

    from experiments.cli import _finished_runs
    from reports.page import PageContext, deviations_section

    exp = get_experiment("fixed-encoder", "debug")
    results = pd.DataFrame({"run": ["mae-mixmim_tiny_32-encoderMixMIM-B-s0", "beit-mixmim_tiny_32-encoderMixMIM-B-s0"],
                            "stage": ["pretrain", "pretrain"], "status": ["done", "failed"]})
    assert _finished_runs(results) == {"mae-mixmim_tiny_32-encoderMixMIM-B-s0"}
    html = deviations_section(PageContext(deviations=lambda r: deviation_rows(exp, RECIPES, _finished_runs(r))),
                              results)
    assert ">planned runs</th>" in html and ">with results</th>" in html
