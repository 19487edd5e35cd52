"""A run configuration in and out of text: ``key=value`` overrides (:func:`apply_overrides`), YAML
(:func:`to_yaml`, :func:`load_yaml`) and plain dicts (:func:`to_dict`), through OmegaConf.

Overrides are type-checked against the dataclass fields of :mod:`mixmim.config.schema`, and an unknown key fails
with the closest valid keys; every config built here is checked by :func:`mixmim.config.validation.validate`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mixmim.config.schema import ConfigError, RunConfig
from mixmim.config.validation import validate


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for key in node:
        path = f"{prefix}{key}"
        keys.append(path)
        value = node[key]
        if isinstance(value, DictConfig) and OmegaConf.get_type(value) is not dict:
            keys.extend(_all_keys(value, path + "."))
    return keys


def apply_overrides(cfg: RunConfig, overrides: list[str] | dict[str, Any]) -> RunConfig:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied and type-checked.

    Raises:
        ConfigError: an unknown key (with the closest valid keys) or a value of the wrong type.
    """
    base = OmegaConf.structured(cfg)
    literal = isinstance(overrides, dict)  # Python values are taken as they are; CLI text is parsed
    items = list(overrides.items()) if literal else [_split_override(o) for o in overrides]
    for key, _ in items:
        if OmegaConf.select(base, key, default="__missing__") == "__missing__":
            close = difflib.get_close_matches(key, _all_keys(base), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key '{key}'.{hint}")
    try:  # one merge for all (each merge deep-copies the whole config: 20 merges per run made `show` slow)
        return to_dataclass(OmegaConf.merge(base, _patch(items, literal)))
    except (ValidationError, ConfigKeyError, OmegaConfBaseException):
        pass  # a bad value: merge one key at a time to name it
    for key, value in items:
        try:
            base = OmegaConf.merge(base, _patch([(key, value)], literal))
        except (ValidationError, ConfigKeyError, OmegaConfBaseException) as err:
            expected = type(OmegaConf.select(OmegaConf.structured(cfg), key)).__name__
            reason = err.msg.splitlines()[0]
            raise ConfigError(f"bad value {value!r} for key '{key}' (expected {expected}): {reason}") from None
    return to_dataclass(base)


def _patch(items: list[tuple[str, Any]], literal: bool) -> DictConfig:
    """The overrides as one config to merge (later items win)."""
    if not literal:
        return OmegaConf.from_dotlist([f"{key}={value}" for key, value in items])
    patch = OmegaConf.create()
    for key, value in items:
        OmegaConf.update(patch, key, value, force_add=True)
    return patch


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value (for example pretrain.epochs=10)")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def to_dataclass(node: DictConfig) -> RunConfig:
    """Turn a structured OmegaConf node back into a :class:`RunConfig`, checked by :func:`validate`."""
    cfg = OmegaConf.to_object(node)
    assert isinstance(cfg, RunConfig)
    return validate(cfg)


def to_yaml(cfg: RunConfig) -> str:
    """The fully resolved config as YAML (what ``config.yaml`` in a run directory holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def load_yaml(path: str | Path) -> RunConfig:
    """Read a ``config.yaml`` written by :func:`to_yaml`, validated against :class:`RunConfig`."""
    merged = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.load(path))
    return to_dataclass(merged)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable dict of any config dataclass."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
