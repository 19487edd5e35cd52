"""Checking a run configuration: :func:`validate` (one :class:`~mixmim.config.schema.ConfigError` naming every
bad value) and :func:`config_problems` (the list it names).

A config is checked whenever one is built (:mod:`mixmim.config.io`) and when a stage starts
(:mod:`mixmim.engine.stage`): every closed-set and ranged value (:mod:`mixmim.config.choices`), and the rules
that tie fields together (an lr to derive, a data root to read, what GPU decoding serves, a COCO batch that
divides among the ranks).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from mixmim.config.choices import ACCEPTED_QUIETLY, CHOICES, LIST_CHOICES, RANGES
from mixmim.config.schema import ConfigError, LaunchConfig, RunConfig
from mixmim.runs.rendezvous import tasks_per_node

# launch.network_interface: an interface name, or NCCL's "^docker" / "=eth0" / comma-separated forms.
INTERFACE_NAME = re.compile(r"[\w.:@^=,-]*")


def world_size(launch: LaunchConfig) -> int:
    """Processes a stage runs in all: ``launch.nodes x`` :func:`tasks_per_node`."""
    return launch.nodes * tasks_per_node(launch)


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _choice_problem(key: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if value in allowed:
        return None
    closest = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.0)
    hint = f"; closest: '{closest[0]}'" if closest else ""
    return f"bad value {value!r} for key '{key}': allowed values are {', '.join(allowed)}{hint}"


def config_problems(cfg: RunConfig) -> list[str]:
    """Every value of ``cfg`` outside its closed set (:data:`CHOICES`) or range (:data:`RANGES`)."""
    problems = [p for key, allowed in CHOICES.items() if allowed and _get(cfg, key) not in ACCEPTED_QUIETLY.get(key, ())
                and (p := _choice_problem(key, _get(cfg, key), allowed))]  # fmt: skip  (empty: not registered yet)
    for key, allowed in LIST_CHOICES.items():
        problems += [p for item in _get(cfg, key) if (p := _choice_problem(key, item, allowed))]
    for key, bounds in RANGES.items():
        value = _get(cfg, key)
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if not bounds.contains(item):
                problems.append(f"bad value {value!r} for key '{key}': must be {bounds.describe()}")
                break
    for stage in ("pretrain", "finetune", "linprobe", "coco"):
        section = getattr(cfg, stage)
        if section.lr == 0 and section.blr == 0:
            problems.append(f"'{stage}.lr' and '{stage}.blr' are both 0: set one > 0 (lr 0 derives it from blr)")
    if cfg.data.dataset == "digits" and cfg.data.root:
        problems.append(f"'data.root'={cfg.data.root!r} is set but 'data.dataset' is 'digits' (the built-in data, "
                        "which reads no folder): pass --set data.dataset=folder to read it, or drop data.root")
    problems += _decode_problems(cfg)
    if not INTERFACE_NAME.fullmatch(cfg.launch.network_interface):
        problems.append(f"bad value {cfg.launch.network_interface!r} for key 'launch.network_interface': "
                        "must be a network interface name (e.g. eth0, ib0) or empty")
    ranks = world_size(cfg.launch)
    if "coco" in cfg.stages and cfg.coco.batch_size % ranks:
        problems.append(f"'coco.batch_size'={cfg.coco.batch_size} (images per step over all ranks) does not divide "
                        f"among the {ranks} ranks of launch.nodes x launch.tasks_per_node: use a multiple of {ranks}")
    return problems


# Stages whose training augmentation the GPU decode path does not serve, and why (data.decode=gpu refuses them).
GPU_DECODE_REFUSED_STAGES = {
    "finetune": "its augmentation (timm's RandAugment and random erasing) runs on PIL images in the loader workers "
                "and has no device form",
}


def _decode_problems(cfg: RunConfig) -> list[str]:
    """``data.decode=gpu`` with what it cannot serve: the built-in digits (not JPEG files) and the stages of
    :data:`GPU_DECODE_REFUSED_STAGES`. (No CUDA device: refused when the stage starts, on the node that runs it:
    ``mixmim.data.gpu_decode.check_decode_device``.)"""
    if cfg.data.decode != "gpu":
        return []
    problems = []
    if cfg.data.dataset != "folder":
        problems.append(f"'data.decode'='gpu' decodes JPEG files, but 'data.dataset' is {cfg.data.dataset!r} (arrays, "
                        "not JPEG): pass --set data.dataset=folder data.root=/path/to/jpegs, or data.decode=cpu")
    for stage in (s for s in cfg.stages if s in GPU_DECODE_REFUSED_STAGES):
        problems.append(f"'data.decode'='gpu' cannot serve the {stage} stage: {GPU_DECODE_REFUSED_STAGES[stage]}; "
                        f"run {stage} with data.decode=cpu (leave it out of 'stages' here, then rerun the same run "
                        f"with --set data.decode=cpu --force-config: the change is recorded in manifest.json)")
    return problems


def validate(cfg: RunConfig) -> RunConfig:
    """``cfg`` itself when every closed-set and ranged value is allowed.

    Raises:
        ConfigError: naming each bad key, its value and the allowed values (with the closest) or range.
    """
    problems = config_problems(cfg)
    if problems:
        lead = "" if len(problems) == 1 else f"{len(problems)} bad values in run '{cfg.name or cfg.experiment}':\n  "
        raise ConfigError(lead + "\n  ".join(problems))
    return cfg
