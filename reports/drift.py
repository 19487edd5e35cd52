"""Protocol drift: where a run's recipe differs from the recipe behind a reference number.

A reproduced number is only comparable with the paper's when it was trained the same way. The fields
compared are the ones that change results most and that every stage records: epochs, effective batch,
absolute lr and precision (``reports.references.RECIPE_FIELDS``). A field the reference leaves null is not
compared; a field the run did not record is reported ("not recorded"), because it cannot be checked.

A number is also only comparable when it was trained on the reference's data: each stage's class count, training
images and data fingerprint (:data:`DATA_FIELDS`, recorded by every stage since they were added) are compared with
the reference's dataset (``reports.references.DatasetRef``); a field the reference leaves null (the fingerprint,
unless a reference's copy was fingerprinted) is not compared, and neither is one a run did not record (runs written
before the counts were recorded: their data cannot be told apart, so they are not flagged).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from reports.references import RECIPE_FIELDS, DatasetRef, Recipe

_PRECISION_ALIASES = {
    "amp": "fp16",
    "fp16": "fp16",
    "float16": "fp16",
    "16": "fp16",
    "16-mixed": "fp16",
    "half": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "bf16-mixed": "bf16",
    "fp32": "fp32",
    "float32": "fp32",
    "32": "fp32",
    "full": "fp32",
}
_FIELD_NAMES = {"epochs": "epochs", "effective_batch": "effective batch", "lr": "lr", "precision": "precision"}
# run column (result.json / manifest) -> (DatasetRef field, name shown)
DATA_FIELDS = {
    "data_classes": ("classes", "classes"),
    "data_images": ("train_images", "training images"),
    "data_fingerprint": ("fingerprint", "data fingerprint"),
}
FINGERPRINT_SHOWN = 12  # hex digits of a fingerprint shown in a note
LR_RTOL = 1e-6


def normalize_precision(value: Any) -> str | None:
    """``'AMP'``, ``'float16'`` -> ``'fp16'``; unknown names are returned lower-cased; None stays None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    return _PRECISION_ALIASES.get(text, text)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if not value.is_integer() or abs(value) < 1 else str(int(value))
    return str(value)


def _differs(field: str, run_value: Any, ref_value: Any) -> bool:
    if field == "data_fingerprint":
        return str(run_value) != str(ref_value)
    if field == "precision":
        return normalize_precision(run_value) != normalize_precision(ref_value)
    if field == "schedule":
        return str(run_value) != str(ref_value)
    if field == "lr":
        return not math.isclose(float(run_value), float(ref_value), rel_tol=LR_RTOL, abs_tol=0.0)
    return int(run_value) != int(ref_value)


def recipe_drift(run_recipe: Mapping[str, Any], recipe: Recipe) -> list[tuple[str, str, str]]:
    """Differences of one run stage from a reference recipe as (field, run value, reference value).

    Example: ``[('epochs', '1', '600'), ('lr', 'not recorded', '0.0012')]``.
    """
    diffs = []
    for field in RECIPE_FIELDS:
        ref_value = getattr(recipe, field)
        if ref_value is None:
            continue
        run_value = run_recipe.get(field)
        if _missing(run_value):
            diffs.append((field, "not recorded", _format(ref_value)))
        elif _differs(field, run_value, ref_value):
            shown = normalize_precision(run_value) if field == "precision" else _format(run_value)
            diffs.append((field, str(shown), _format(ref_value)))
    return diffs


def dataset_drift(run_data: Mapping[str, Any], dataset: DatasetRef) -> list[tuple[str, str, str]]:
    """Differences of one run stage's data from a reference's dataset as (field, run value, reference value);
    fields the reference or the run leaves empty are skipped (module docstring).

    Example: ``[('data_classes', '10', '1000'), ('data_images', '160', '1281167')]``.
    """
    diffs = []
    for column, (attr, _) in DATA_FIELDS.items():
        ref_value, run_value = getattr(dataset, attr), run_data.get(column)
        if ref_value is None or _missing(run_value) or not _differs(column, run_value, ref_value):
            continue
        if column == "data_fingerprint":
            diffs.append((column, str(run_value)[:FINGERPRINT_SHOWN], str(ref_value)[:FINGERPRINT_SHOWN]))
        else:
            diffs.append((column, _format(run_value), _format(ref_value)))
    return diffs


RunDrift = tuple[tuple[str, str, str, str], ...]  # (stage, field, run value, reference value) per difference


def run_drift(stage_recipes: Mapping[str, Mapping[str, Any]], recipes: Mapping[str, Recipe]) -> RunDrift:
    """Every difference of one run from a reference's recipes (stage -> Recipe); empty when none.

    ``stage_recipes`` maps stage -> the run's recorded fields for that stage (missing stage: empty).
    """
    return tuple(
        (stage, *diff)
        for stage, recipe in recipes.items()
        for diff in recipe_drift(stage_recipes.get(stage, {}), recipe)
    )


def run_dataset_drift(stage_data: Mapping[str, Mapping[str, Any]], datasets: Mapping[str, DatasetRef]) -> RunDrift:
    """Every difference of one run's data from a reference's datasets (stage -> DatasetRef); empty when none."""
    return tuple(
        (stage, *diff)
        for stage, dataset in datasets.items()
        for diff in dataset_drift(stage_data.get(stage, {}), dataset)
    )


def summarize_drift(per_run: Sequence[RunDrift], recipes: Mapping[str, Recipe]) -> str:
    """One line for the runs of a cell, e.g.
    ``pretrain (mixmim_b_pretrain): epochs 100 [1 of 3 runs], 300 [2 of 3 runs] vs 600, precision bf16 vs fp16``.

    A run value is followed by its share of runs when not every run has it; '' when no run drifts.
    """
    keys = {stage: recipe.key for stage, recipe in recipes.items()}
    return _summarize(per_run, keys, {field: _FIELD_NAMES[field] for field in RECIPE_FIELDS})


def summarize_dataset_drift(per_run: Sequence[RunDrift], datasets: Mapping[str, DatasetRef]) -> str:
    """One line for the data of a cell's runs, e.g. ``finetune (imagenet1k): classes 10 vs 1000, training images
    160 vs 1281167``; '' when every run's data matches."""
    keys = {stage: dataset.key for stage, dataset in datasets.items()}
    return _summarize(per_run, keys, {column: shown for column, (_, shown) in DATA_FIELDS.items()})


def _summarize(per_run: Sequence[RunDrift], keys: Mapping[str, str], names: Mapping[str, str]) -> str:
    """``stage (key): <name> <run values> vs <reference value>, ...; ...`` over stages (``keys``' order) and fields
    (``names``' order)."""
    n = len(per_run)
    counts: dict[tuple[str, str], Counter[str]] = {}
    ref_values: dict[tuple[str, str], str] = {}
    for drift in per_run:
        for stage, field, run_value, ref_value in drift:
            counts.setdefault((stage, field), Counter())[run_value] += 1
            ref_values[(stage, field)] = ref_value
    parts = []
    for stage, key in keys.items():
        fields = []
        for field, name in names.items():
            if (stage, field) not in counts:
                continue
            values = ", ".join(
                v if c == n else f"{v} [{c} of {n} runs]" for v, c in sorted(counts[(stage, field)].items())
            )
            fields.append(f"{name} {values} vs {ref_values[(stage, field)]}")
        if fields:
            parts.append(f"{stage} ({key}): " + ", ".join(fields))
    return "; ".join(parts)
