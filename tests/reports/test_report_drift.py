"""Protocol drift against a reference recipe."""

from __future__ import annotations

from reports.drift import normalize_precision, recipe_drift, run_drift, summarize_drift
from reports.references import Recipe

RECIPE = Recipe(key="r", stage="pretrain", source="s", epochs=600, effective_batch=2048, lr=1.2e-3, precision="fp16")
SAME = {"epochs": 600, "effective_batch": 2048, "lr": 0.0012000000000000001, "precision": "AMP"}


def test_no_drift_when_the_recipe_matches() -> None:
    assert recipe_drift(SAME, RECIPE) == []


def test_each_field_is_compared() -> None:
    run = {"epochs": 1, "effective_batch": 64, "lr": 3e-4, "precision": "bf16"}
    assert recipe_drift(run, RECIPE) == [
        ("epochs", "1", "600"),
        ("effective_batch", "64", "2048"),
        ("lr", "0.0003", "0.0012"),
        ("precision", "bf16", "fp16"),
    ]


def test_unrecorded_fields_are_reported_and_unknown_reference_fields_skipped() -> None:
    partial = Recipe(key="p", stage="finetune", source="s", epochs=100)
    assert recipe_drift({}, partial) == [("epochs", "not recorded", "100")]


def test_summary_counts_runs() -> None:
    recipes = {"pretrain": RECIPE}
    runs = [run_drift({"pretrain": SAME}, recipes), run_drift({"pretrain": {**SAME, "epochs": 300}}, recipes)]
    assert summarize_drift(runs, recipes) == "pretrain (r): epochs 300 [1 of 2 runs] vs 600"
    assert summarize_drift([run_drift({"pretrain": SAME}, recipes)], recipes) == ""


def test_precision_names() -> None:
    assert [normalize_precision(p) for p in ("AMP", "float16", "bfloat16", "32", None)] == [
        "fp16",
        "fp16",
        "bf16",
        "fp32",
        None,
    ]
