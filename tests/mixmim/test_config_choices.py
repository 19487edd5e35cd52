"""Closed sets and numeric ranges are checked when a config is built: every such field is walked."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baselines.registry import CARDS  # declares method.name's closed set (the method cards)
from mixmim.backbone_names import DEPRECATED_BACKBONE_NAMES
from mixmim.config import (
    CHOICES,
    RANGES,
    ConfigError,
    RunConfig,
    apply_overrides,
    check_registry,
    config_problems,
    register_choices,
)

# Free text, deliberately not a closed set (names, paths, cluster accounts, a timm RandAugment string, a network
# interface: checked against INTERFACE_NAME).
FREE_TEXT = {"experiment", "name", "init", "method.tokenizer_path", "data.root", "finetune.randaug", "coco.root",
             "launch.partition", "launch.account", "launch.qos", "launch.constraint", "launch.network_interface"}


def _leaves(node, prefix=""):
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value


def test_every_text_and_number_field_is_declared():
    """A new str field is either a closed set or declared free text; a new number gets a range."""
    leaves = dict(_leaves(RunConfig()))
    text = {k for k, v in leaves.items() if isinstance(v, str)}
    numbers = {k for k, v in leaves.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert text - FREE_TEXT == set(CHOICES)
    assert numbers <= set(RANGES)
    assert set(RANGES) - numbers == {"pretrain.betas"}  # a pair, each in [0, 1)
    assert config_problems(RunConfig()) == []


def test_a_registry_that_differs_from_its_closed_set_is_one_error():
    """Backbones and stages are registries above the torch-free config: each checks at import that it registers
    exactly the allowed names (a name added on one side only fails at once)."""
    check_registry("stages", ["tokenizer", "pretrain", "finetune", "linprobe", "knn", "coco"])
    with pytest.raises(ConfigError, match=r"registry of 'stages' .* add or remove \['ijepa'\]"):
        check_registry("stages", ["tokenizer", "pretrain", "finetune", "linprobe", "knn", "coco", "ijepa"])


def test_method_names_are_declared_by_the_method_registry(monkeypatch):
    """``method.name`` is the method cards' names and the random control, declared by the registry at its import
    (mixmim/ imports nothing above it); before that the set is empty and unchecked, after it a typo is refused."""
    assert CHOICES["method.name"] == (*CARDS, "random")
    monkeypatch.setitem(CHOICES, "method.name", ())  # as in a process that never imported the registry
    assert apply_overrides(RunConfig(), {"method.name": "anything"}).method.name == "anything"
    register_choices("method.name", ("mixmim", "random"))
    with pytest.raises(ConfigError, match="'anything' for key 'method.name': allowed values are mixmim, random"):
        apply_overrides(RunConfig(), {"method.name": "anything"})
    with pytest.raises(ConfigError, match="'method.nam' is not a closed set"):
        register_choices("method.nam", ("mixmim",))


def test_implementations_read_the_sets_of_the_config():
    """One declaration: what an implementation accepts is the config's closed set itself."""
    from mixmim.engine.precision import PRECISIONS
    from mixmim.pretrain.method import MASK_TYPES

    assert MASK_TYPES is CHOICES["method.mask_type"] and PRECISIONS is CHOICES["pretrain.precision"]


# Values that other fields must allow: data.decode=gpu reads JPEG files (not the built-in digits).
COMPANIONS = {"data.decode": {"data.dataset": "folder", "data.root": "/imagenet"}}


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_closed_set_refuses_a_typo_naming_allowed_and_closest(key):
    allowed = CHOICES[key]
    for value in allowed:  # every allowed value passes (a BEiT-only or cluster-only value is still a valid config)
        assert apply_overrides(RunConfig(), {**COMPANIONS.get(key, {}), key: value})
    typo = allowed[-1][:-1] + "q"
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), [f"{key}={typo}"])
    message = str(err.value)
    assert f"'{key}'" in message and repr(typo) in message
    assert ", ".join(allowed) in message and f"closest: '{allowed[-1]}'" in message


def test_stage_list_items_are_checked():
    with pytest.raises(ConfigError, match=r"'knnn' for key 'stages'.*closest: 'knn'"):
        apply_overrides(RunConfig(), ["stages=[pretrain,knnn]"])


def _outside(bounds):
    """Values just outside a range (its open bounds themselves, or one unit beyond a closed bound)."""
    values = []
    if bounds.low is not None:
        values.append(bounds.low if bounds.low_open else bounds.low - 1)
    if bounds.high is not None:
        values.append(bounds.high if bounds.high_open else bounds.high + 1)
    return values


@pytest.mark.parametrize("key", sorted(RANGES))
def test_ranges_refuse_values_outside(key):
    bounds = RANGES[key]
    default = dict(_leaves(RunConfig()))[key]
    for bad in _outside(bounds):
        value = (bad, 0.9) if isinstance(default, tuple) else type(default)(bad)
        if bounds.contains(value[0] if isinstance(value, tuple) else value):  # int() of an open float bound
            continue
        with pytest.raises(ConfigError, match=rf"for key '{key}': must be {bounds.describe()}".replace("(", r"\(")
                           .replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
            apply_overrides(RunConfig(), {key: value})


@pytest.mark.parametrize(("override", "expected"), [
    ("pretrain.epochs=-5", "'pretrain.epochs': must be > 0"),
    ("pretrain.lr=-1", "'pretrain.lr': must be >= 0"),
    ("pretrain.batch_size=0", "'pretrain.batch_size': must be > 0"),
    ("method.mask_ratio=1.0", "'method.mask_ratio': must be in (0, 1)"),
    ("pretrain.blr=0", "'pretrain.lr' and 'pretrain.blr' are both 0"),
])
def test_issue_examples_are_refused(override, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), [override])
    assert expected in str(err.value)


def test_a_coco_batch_that_does_not_divide_among_the_ranks_is_refused_with_the_config():
    """``coco.batch_size`` is the global batch: refused when the config is built (``--dry-run``), not after the
    earlier stages of the run have trained on that world size."""
    coco = {"stages": ["pretrain", "coco"], "coco.batch_size": 4}
    with pytest.raises(ConfigError, match=r"'coco.batch_size'=4 .* among the 3 ranks .* multiple of 3"):
        apply_overrides(RunConfig(), {**coco, "launch.tasks_per_node": 3})
    assert apply_overrides(RunConfig(), {**coco, "launch.tasks_per_node": 2}).launch.tasks_per_node == 2
    assert apply_overrides(RunConfig(), {"coco.batch_size": 4, "launch.tasks_per_node": 3}).coco.batch_size == 4


def test_a_network_interface_that_is_no_interface_name_is_refused():
    with pytest.raises(ConfigError, match=r"'eth0; rm' for key 'launch.network_interface'.*interface name"):
        apply_overrides(RunConfig(), {"launch.network_interface": "eth0; rm"})
    assert apply_overrides(RunConfig(), {"launch.network_interface": "^docker,lo"}).launch.network_interface


def test_several_bad_values_are_reported_together():
    with pytest.raises(ConfigError, match=r"2 bad values(.|\n)*mask_type(.|\n)*pretrain.epochs"):
        apply_overrides(RunConfig(), {"method.mask_type": "mxi", "pretrain.epochs": 0})


def test_config_package_does_not_import_torch():
    """The CLI reads configs without torch; the mixmim.config package (every module of it) must not pull it in."""
    code = ("import sys, pkgutil, importlib, mixmim.config as c; "
            "[importlib.import_module(f'mixmim.config.{m.name}') for m in pkgutil.iter_modules(c.__path__)]; "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]  # this checkout's package, not an installed one
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "[]"


def test_a_data_root_with_the_builtin_digits_is_refused():
    """The digits dataset reads no folder: a ``data.root`` beside it was silently ignored."""
    with pytest.raises(ConfigError, match=r"'data.root'='/data/imagenet' is set but 'data.dataset' is 'digits'.*"
                                          r"data.dataset=folder"):
        apply_overrides(RunConfig(), ["data.root=/data/imagenet"])
    assert apply_overrides(RunConfig(), ["data.root=/data/imagenet", "data.dataset=folder"]).data.root


def test_suggestions_offer_current_backbone_names_only():
    """The old ViT names still build (with a warning) but are never offered as allowed or closest values."""
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), ["model.backbone=vit_base_patch61"])
    message = str(err.value)
    assert "closest: 'mixmim_vit_base_patch16'" in message
    assert not any(f" {old}" in message or f"'{old}'" in message for old in DEPRECATED_BACKBONE_NAMES)
    assert apply_overrides(RunConfig(), ["model.backbone=vit_base_patch16"]).model.backbone == "vit_base_patch16"
