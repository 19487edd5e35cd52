"""Reference numbers, recipes and noise floors: the data that reproduced numbers are compared against.

The data lives in ``reports/references/*.yaml`` (one file per family of sources), each file with up to
three sections::

    references:    {key: {value, source, std?, n?, unit?, what?, recipe?, dataset?, noise_floor?, engine?, note?,
                          status?}}
    recipes:       {key: {stage, epochs, effective_batch, lr, blr?, lr_scale_base?, precision, source,
                          warmup_epochs?, method?, betas?, weight_decay?, schedule?, min_lr?, warmup_lr?,
                          layer_decay?, clip_grad?, fc_norm?, train_pos_embed?, probe_features?, probe_crop?,
                          hierarchical?: {field: value}}}
    noise_floors:  {key: {value, unit?, what?, source}}
    datasets:      {key: {classes?, train_images?, fingerprint?, what?, source}}

A reference's ``recipe`` and ``dataset`` map a stage to the recipe / dataset it was trained with
(``dataset: {pretrain: imagenet1k, finetune: imagenet1k}``); a run that differs is flagged (``reports.drift``).

Every entry needs a non-empty ``source``: a number without a source is not a reference. ``value: null``
marks a number that exists in a paper but is not transcribed yet; the report shows it as missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REFERENCES_DIR = Path(__file__).with_name("references")
RECIPE_FIELDS = ("epochs", "effective_batch", "lr", "precision")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster


class ReferenceDataError(ValueError):
    """A reference file is malformed (no source, duplicate key, unknown recipe, dataset or noise floor)."""


@dataclass(frozen=True)
class Reference:
    """One published number. ``value`` is None while it is still to be transcribed."""

    key: str
    value: float | None
    source: str
    std: float | None = None
    n: int | None = None
    unit: str = ""
    what: str = ""
    recipe: Mapping[str, str] = field(default_factory=dict)  # stage -> recipe key
    dataset: Mapping[str, str] = field(default_factory=dict)  # stage -> dataset key
    noise_floor: str | None = None
    engine: str | None = None
    note: str = ""
    status: str = ""


@dataclass(frozen=True)
class Recipe:
    """The training protocol behind a reference: what a run must match to be comparable."""

    key: str
    stage: str
    source: str
    epochs: int | None = None
    effective_batch: int | None = None
    lr: float | None = None  # absolute lr
    blr: float | None = None
    lr_scale_base: int | None = None
    precision: str | None = None  # fp32 | fp16 (AMP) | bf16
    warmup_epochs: int | None = None
    method: str | None = None  # the method whose own recipe this is (a name of baselines.METHODS)
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    schedule: str | None = None  # mixmim.engine.schedule.SCHEDULES: the official scheduler's formula
    # Fine-tuning beyond the budget (a method's own recipe, baselines/cards/*.py ``finetune``); probe: its linear probe
    min_lr: float | None = None
    warmup_lr: float | None = None
    layer_decay: float | None = None
    clip_grad: float | None = None
    fc_norm: bool | None = None
    train_pos_embed: bool | None = None
    probe_features: str | None = None
    probe_crop: str | None = None
    hierarchical: Mapping[str, Any] = field(default_factory=dict)  # the fields that differ on the hierarchical backbone


@dataclass(frozen=True)
class DatasetRef:
    """The training split behind a reference: what a run's data must match to be comparable. A field left None
    is not compared (a fingerprint only where the reference's copy was fingerprinted,
    ``mixmim.data.fingerprint``)."""

    key: str
    source: str
    classes: int | None = None
    train_images: int | None = None
    fingerprint: str | None = None
    what: str = ""


@dataclass(frozen=True)
class NoiseFloor:
    """The seed-to-seed spread of a metric: a delta below it is not a difference."""

    key: str
    value: float
    source: str
    unit: str = ""
    what: str = ""


@dataclass(frozen=True)
class References:
    """All reference data, keyed by name."""

    values: Mapping[str, Reference] = field(default_factory=dict)
    recipes: Mapping[str, Recipe] = field(default_factory=dict)
    noise_floors: Mapping[str, NoiseFloor] = field(default_factory=dict)
    datasets: Mapping[str, DatasetRef] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def get(self, key: str | None) -> Reference | None:
        """The reference named ``key``, or None (no key, or no such entry)."""
        return self.values.get(key) if key else None

    def floor_for(self, ref: Reference | None) -> NoiseFloor | None:
        """The noise floor a reference names, if any."""
        return self.noise_floors.get(ref.noise_floor) if ref is not None and ref.noise_floor else None


def _require_source(section: str, key: str, entry: Any, path: Path) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ReferenceDataError(f"{path.name}: {section}.{key} must be a mapping, got {type(entry).__name__}")
    if not str(entry.get("source") or "").strip():
        raise ReferenceDataError(
            f"{path.name}: {section}.{key} has no source (a number without a source is not a reference)"
        )
    return entry


def _parse_reference(key: str, entry: dict[str, Any], path: Path) -> Reference:
    if "value" not in entry:
        raise ReferenceDataError(f"{path.name}: references.{key} has no 'value' (use null for 'to transcribe')")
    value = entry["value"]
    if value is not None and not isinstance(value, (int, float)):
        raise ReferenceDataError(f"{path.name}: references.{key}.value must be a number or null, got {value!r}")
    return Reference(
        key=key,
        value=None if value is None else float(value),
        source=str(entry["source"]),
        std=None if entry.get("std") is None else float(entry["std"]),
        n=entry.get("n"),
        unit=str(entry.get("unit", "")),
        what=str(entry.get("what", "")),
        recipe=dict(entry.get("recipe") or {}),
        dataset=dict(entry.get("dataset") or {}),
        noise_floor=entry.get("noise_floor"),
        engine=entry.get("engine"),
        note=str(entry.get("note", "")),
        status=str(entry.get("status", "")),
    )


def _parse_recipe(key: str, entry: dict[str, Any]) -> Recipe:
    known = {f for f in Recipe.__dataclass_fields__ if f != "key"}
    fields = {k: v for k, v in entry.items() if k in known}
    if fields.get("betas") is not None:
        fields["betas"] = tuple(fields["betas"])
    return Recipe(key=key, **fields)


def _merge(target: dict[str, Any], key: str, item: Any, path: Path, section: str) -> None:
    if key in target:
        raise ReferenceDataError(f"{path.name}: duplicate {section} key '{key}' (already defined in another file)")
    target[key] = item


def load_references(paths: Iterable[str | Path] | None = None) -> References:
    """Load and check reference YAML files (default: every ``reports/references/*.yaml``).

    Raises:
        ReferenceDataError: an entry without a source, a duplicate key, or a reference naming an unknown
            recipe or noise floor.
    """
    files = tuple(sorted(Path(p) for p in paths)) if paths is not None else tuple(sorted(REFERENCES_DIR.glob("*.yaml")))
    values: dict[str, Reference] = {}
    recipes: dict[str, Recipe] = {}
    floors: dict[str, NoiseFloor] = {}
    datasets: dict[str, DatasetRef] = {}
    for path in files:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
        for key, entry in (data.get("references") or {}).items():
            ref = _parse_reference(str(key), _require_source("references", key, entry, path), path)
            _merge(values, str(key), ref, path, "references")
        for key, entry in (data.get("recipes") or {}).items():
            _merge(
                recipes,
                str(key),
                _parse_recipe(str(key), _require_source("recipes", key, entry, path)),
                path,
                "recipes",
            )
        for key, entry in (data.get("noise_floors") or {}).items():
            entry = _require_source("noise_floors", key, entry, path)
            floor = NoiseFloor(
                str(key),
                float(entry["value"]),
                str(entry["source"]),
                str(entry.get("unit", "")),
                str(entry.get("what", "")),
            )
            _merge(floors, str(key), floor, path, "noise_floors")
        for key, entry in (data.get("datasets") or {}).items():
            entry = _require_source("datasets", key, entry, path)
            known = {f for f in DatasetRef.__dataclass_fields__ if f != "key"}
            _merge(datasets, str(key), DatasetRef(key=str(key), **{k: v for k, v in entry.items() if k in known}),
                   path, "datasets")  # fmt: skip
    _check_links(values, recipes, floors, datasets)
    return References(values=values, recipes=recipes, noise_floors=floors, datasets=datasets, files=files)


def _check_links(values: Mapping[str, Reference], recipes: Mapping[str, Recipe], floors: Mapping[str, NoiseFloor],
                 datasets: Mapping[str, DatasetRef]) -> None:  # fmt: skip
    """Every recipe, dataset and noise floor a reference names must exist."""
    for ref in values.values():
        for stage, recipe_key in ref.recipe.items():
            if recipe_key not in recipes:
                raise ReferenceDataError(
                    f"reference '{ref.key}' names unknown recipe '{recipe_key}' for stage '{stage}'"
                )
        for stage, dataset_key in ref.dataset.items():
            if dataset_key not in datasets:
                raise ReferenceDataError(
                    f"reference '{ref.key}' names unknown dataset '{dataset_key}' for stage '{stage}'"
                )
        if ref.noise_floor and ref.noise_floor not in floors:
            raise ReferenceDataError(f"reference '{ref.key}' names unknown noise floor '{ref.noise_floor}'")
