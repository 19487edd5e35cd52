"""Recipes by construction: every run trains on its method's own recipe except what its experiment declares."""

from __future__ import annotations

import math

import pytest

from baselines.registry import CARDS
from experiments.definitions.recipes import IMAGENET_PRETRAIN
from experiments.deviations import official_recipe
from experiments.recipe_table import FIELD_KEYS, declared_fields, recipe_table, resolved_recipe
from experiments.registry import EXPERIMENTS, get_experiment
from experiments.spec import RecipeOverrideError, make_run
from reports.drift import run_drift
from reports.references import RECIPE_FIELDS, load_references

REFS = load_references()
OWN = {(r.method, r.stage): r for r in REFS.recipes.values() if r.method}
CASES = [(name, variant) for name in EXPERIMENTS for variant in ("full", "debug")]


def _differs(field, run_value, ref_value) -> bool:
    if isinstance(ref_value, float):
        return not math.isclose(float(run_value), ref_value, rel_tol=1e-6)
    if isinstance(ref_value, tuple):
        return tuple(run_value or ()) != ref_value
    return run_value != ref_value


def test_every_method_has_its_own_pretraining_reference():
    assert {m for m, stage in OWN if stage == "pretrain"} == set(CARDS)  # reports/references/recipes.yaml


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_runs_follow_their_methods_recipe_except_declared_fields(name, variant):
    """Each run's resolved pre-training and fine-tuning recipe equals its method's reference recipe except
    for the fields the experiment declares; the report's drift flags show exactly the declared ones that
    differ (never an undeclared one)."""
    exp = get_experiment(name, variant)
    checked = 0
    for cfg in exp.runs:
        for stage in ("pretrain", "finetune"):
            ref = OWN.get((cfg.method.name, stage))
            if stage not in cfg.stages or ref is None:
                continue
            ref = official_recipe(ref, cfg.model.backbone)
            run = resolved_recipe(cfg, stage)
            declared = declared_fields(exp.sets, stage)
            differing = {f for f in FIELD_KEYS if getattr(ref, f) is not None and run[f] is not None
                         and _differs(f, run[f], getattr(ref, f))}
            undeclared = {f: (run[f], getattr(ref, f)) for f in differing - declared}
            assert not undeclared, (cfg.name, stage, undeclared)
            flagged = {field for _, field, _, _ in run_drift({stage: run}, {stage: ref})}
            assert flagged == differing & set(RECIPE_FIELDS), (cfg.name, stage, flagged)
            checked += 1
    assert checked or all(r.method.name == "mixmim" and "pretrain" not in r.stages for r in exp.runs)


def test_fixed_encoder_runs_each_method_on_its_own_recipe_at_equal_epochs():
    exp = get_experiment("fixed-encoder", "full")
    pretrain = {cfg.method.name: resolved_recipe(cfg, "pretrain") for cfg in exp.runs}
    assert {r["epochs"] for r in pretrain.values()} == {300}
    assert {r["effective_batch"] for r in pretrain.values()} == {2048}
    for method, run in pretrain.items():
        ref = OWN[(method, "pretrain")]
        assert (run["blr"], run["lr_scale_base"], run["betas"], run["warmup_epochs"], run["weight_decay"]) == (
            pytest.approx(ref.blr), ref.lr_scale_base, ref.betas, ref.warmup_epochs, ref.weight_decay), method
    assert declared_fields(exp.sets, "pretrain") == {"epochs", "effective_batch", "lr", "precision"}


def test_a_recipe_key_cannot_be_overwritten_by_accident():
    with pytest.raises(RecipeOverrideError, match=r"pretrain.betas.*simmim's own recipe.*replaces="):
        make_run("x", "simmim", "vit_tiny_patch4_32", ("pretrain",), overrides={"pretrain.betas": [0.9, 0.95]})
    cfg = make_run("x", "simmim", "vit_tiny_patch4_32", ("pretrain",), overrides={"pretrain.betas": [0.9, 0.95]},
                   replaces=("pretrain.betas",))
    assert cfg.pretrain.betas == (0.9, 0.95)
    shared = make_run("x", "simmim", "vit_tiny_patch4_32", ("pretrain",), overrides=IMAGENET_PRETRAIN)
    assert shared.pretrain.betas == (0.9, 0.999) and shared.pretrain.epochs == 600


def test_show_prints_the_recipe_table_before_the_yaml(capsys):
    from experiments.cli import main

    assert main(["show", "fixed-encoder"]) == 0
    out = capsys.readouterr().out
    assert out.index("## recipes") < out.index("## run ")
    header = next(line for line in out.splitlines() if line.startswith("| run"))
    for column in ("method", "epochs", "batch", "blr @ base", "lr", "betas", "warmup", "schedule", "wd", "precision"):
        assert f" {column} " in header
    simmim = next(line for line in out.splitlines() if line.startswith("| simmim-mixmim_base") and "pretrain" in line)
    assert "0.0001 @ 512" in simmim and "0.9, 0.999" in simmim and "| 10 " in simmim and "| multistep " in simmim
    assert recipe_table(get_experiment("smoke", "debug")).count("| smoke") == 0  # rows are named by run
