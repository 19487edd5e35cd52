"""Typed run configuration: nested dataclasses, merged and overridden with OmegaConf (torch-free).

A run's configuration is one :class:`RunConfig`. Experiments build it in Python; users change it with
``key=value`` overrides (``pretrain.epochs=10``, ``method.mask_ratio=0.75``). Overrides are type-checked
against the dataclass fields, and an unknown key fails with the closest valid keys.

One concept per module; import the names from here (``from mixmim.config import RunConfig``):

- :mod:`~mixmim.config.schema`: the dataclasses (:class:`RunConfig` and its sections) and :class:`ConfigError`;
- :mod:`~mixmim.config.choices`: the allowed values, closed sets (:data:`CHOICES`) and ranges (:data:`RANGES`),
  declared once, and how the registries above this package meet them (:func:`check_registry`,
  :func:`register_choices`);
- :mod:`~mixmim.config.validation`: checking a config against them (:func:`validate`, :func:`config_problems`);
- :mod:`~mixmim.config.io`: overrides, YAML and dicts (:func:`apply_overrides`, :func:`to_yaml`,
  :func:`load_yaml`, :func:`to_dict`).

A test that patches a name patches the module that defines and reads it (``CHOICES`` is one dict object, shared
by every module: ``monkeypatch.setitem(CHOICES, ...)`` reaches them all).
"""

from mixmim.config.choices import (
    ACCEPTED_QUIETLY,
    AT_LEAST_ONE,
    BACKBONE_NAMES,
    CHOICES,
    COMPILE_MODES,
    FRACTION,
    LIST_CHOICES,
    NON_NEGATIVE,
    POSITIVE,
    PRECISIONS,
    RANGES,
    RATE,
    SCHEDULES,
    STAGE_NAMES,
    Range,
    check_registry,
    register_choices,
)
from mixmim.config.io import apply_overrides, load_yaml, to_dataclass, to_dict, to_yaml
from mixmim.config.schema import (
    CocoConfig,
    ConfigError,
    DataConfig,
    FinetuneConfig,
    KNNConfig,
    LaunchConfig,
    LinearProbeConfig,
    MethodConfig,
    ModelConfig,
    PretrainConfig,
    RunConfig,
)
from mixmim.config.validation import GPU_DECODE_REFUSED_STAGES, INTERFACE_NAME, config_problems, validate, world_size

__all__ = [
    # schema
    "RunConfig", "ModelConfig", "MethodConfig", "DataConfig", "PretrainConfig", "FinetuneConfig",
    "LinearProbeConfig", "KNNConfig", "CocoConfig", "LaunchConfig", "ConfigError",
    # choices
    "CHOICES", "LIST_CHOICES", "ACCEPTED_QUIETLY", "BACKBONE_NAMES", "STAGE_NAMES", "PRECISIONS", "SCHEDULES",
    "COMPILE_MODES", "RANGES", "Range", "POSITIVE", "NON_NEGATIVE", "AT_LEAST_ONE", "FRACTION", "RATE",
    "check_registry", "register_choices",
    # validation
    "validate", "config_problems", "world_size", "INTERFACE_NAME", "GPU_DECODE_REFUSED_STAGES",
    # io
    "apply_overrides", "to_dataclass", "to_yaml", "load_yaml", "to_dict",
]
