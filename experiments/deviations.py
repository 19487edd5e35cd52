"""Deviations from the official recipes: where an experiment's runs train differently from their method's source.

Where they are declared: an experiment names the config keys it sets for every method (``Experiment.sets``)
and, among them, the parts of a method's own recipe it replaces on purpose (``make_run(replaces=...)``, with
the reason in ``Experiment.reasons``). ``tests/experiments/test_recipes.py`` checks that no other field of a
run's recipe differs from its method's official one (``reports/references/recipes.yaml``, ``method:``), so
the rows here are every recipe deviation the runs use. Differences of implementation (not of recipe) are
described per method in docs/methods.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from baselines.registry import backbone_family
from experiments.recipe_table import FIELD_KEYS, RECIPE_STAGES, declared_fields, resolved_recipe
from experiments.spec import Experiment

NOTE = ("Each row: a recipe field of a method and stage where the runs differ from the method's official recipe "
        "(reports/references/recipes.yaml, with its source). Declared in the experiment definition "
        "(Experiment.sets; the reason from Experiment.reasons where given); differences of implementation are "
        "listed per method in docs/methods.md. planned runs: the experiment's runs with that value; with results: "
        "those of them that have finished a stage in this report (the others are pending).")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _differs(ours: Any, official: Any) -> bool:
    if isinstance(official, float) and isinstance(ours, (int, float)):
        return abs(float(ours) - official) > 1e-6 * abs(official)
    if isinstance(official, (tuple, list)):
        return tuple(ours or ()) != tuple(official)
    return ours != official


def _reason(exp: Experiment, stage: str, field: str) -> str:
    keys = [t.format(s=stage) for t in FIELD_KEYS[field]]
    return "; ".join(dict.fromkeys(exp.reasons[k] for k in keys if k in exp.reasons))


def official_recipe(ref: Any, backbone: str) -> Any:
    """``ref`` (a ``reports.references.Recipe``) on ``backbone``: its ``hierarchical`` values on that family."""
    family = ref.hierarchical if backbone_family(backbone) == "hierarchical" else {}
    return dataclasses.replace(ref, **family) if family else ref


def deviation_rows(exp: Experiment, recipes: dict, finished: Collection[str] | None = None) -> list[dict[str, Any]]:
    """One row per method, stage, field and value where the runs differ from the official recipe.

    Args:
        recipes: ``reports.references.load_references().recipes`` (the official recipes, keyed by name).
        finished: the names of the runs that have a result; given, a ``with results`` column counts them.
    """
    official = {(r.method, r.stage): r for r in recipes.values() if r.method}
    rows: dict[tuple, dict[str, Any]] = {}
    for cfg in exp.runs:
        for stage in RECIPE_STAGES:
            ref = official.get((cfg.method.name, stage))
            if stage not in cfg.stages or ref is None:
                continue
            ref = official_recipe(ref, cfg.model.backbone)
            ours, declared = resolved_recipe(cfg, stage), declared_fields(exp.sets, stage)
            for field in FIELD_KEYS:
                value = getattr(ref, field, None)
                if value is None or ours[field] is None or not _differs(ours[field], value):
                    continue
                key = (cfg.method.name, stage, field, _text(ours[field]))
                row = rows.setdefault(key, {
                    "method": cfg.method.name, "stage": stage, "field": field, "ours": _text(ours[field]),
                    "official": _text(value), "planned runs": 0,
                    **({"with results": 0} if finished is not None else {}),
                    "declared": "by the experiment, for every method" if field in declared else "NOT declared",
                    "why": _reason(exp, stage, field), "official recipe": ref.key,
                })
                row["planned runs"] += 1
                if finished is not None:
                    row["with results"] += cfg.name in finished
    return list(rows.values())


def deviation_sources(rows: list[dict[str, Any]], recipes: dict) -> str:
    """The sources of the official recipes the rows name, as one line each (``key: source``)."""
    return "\n".join(f"{key}: {recipes[key].source}" for key in dict.fromkeys(r["official recipe"] for r in rows))
