"""What an experiment is: a grid of runs (each a RunConfig with its chain of stages) and its tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from baselines.registry import CONTROL, method_card
from baselines.registry import method_defaults as source_recipe
from mixmim.config import RunConfig, apply_overrides, validate
from reports.spec import TableSpec

VARIANTS = ("full", "debug", "small")  # small: only the experiments of experiments.registry.SMALL_VARIANT


@dataclass
class Experiment:
    """A named experiment: its runs and the paper-style tables their results fill."""

    name: str
    description: str
    runs: list[RunConfig]
    tables: list[TableSpec] = field(default_factory=list)
    variant: str = "full"
    # The config keys the experiment sets for every method (epochs, sizes, data, and any part of a method's
    # own recipe it replaces on purpose); every other recipe field is each method's own (recipe_table.py).
    sets: tuple[str, ...] = ()
    # The seeds every run is replicated with (experiments.seeds.replicate; ``--seeds`` replaces them). The
    # definitions build seed 0 of each run; the CLI replicates.
    seeds: tuple[int, ...] = (0,)
    # Why the experiment replaces a part of the methods' own recipes: config key -> reason (the review page's
    # deviations section, experiments/deviations.py).
    reasons: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [r.name for r in self.runs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"experiment '{self.name}' defines runs with the same name: {duplicates}")
        for cfg in self.runs:  # a definition that sets a field directly is checked too
            validate(cfg)


def run_name(method: str, backbone: str, setting: Mapping[str, Any], seed: int) -> str:
    """``<method>-<backbone>[-<key><value>...]-s<seed>``: readable and unique within an experiment."""
    parts = [method, backbone] + [f"{k}{v}" for k, v in sorted(setting.items())] + [f"s{seed}"]
    return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts)


def method_defaults(method: str, backbone: str | None = None) -> dict[str, Any]:
    """The source paper's recipe for a method on ``backbone`` (``baselines.method_defaults``); none for the
    random control."""
    return {} if method == CONTROL else source_recipe(method, backbone)


def finetune_defaults(method: str, backbone: str | None = None) -> dict[str, Any]:
    """The method's own fine-tuning recipe on ``backbone`` (``baselines.method_finetune_defaults``); none for the
    random control."""
    if method == "random":
        return {}
    from baselines import method_finetune_defaults

    return dict(method_finetune_defaults(method, backbone))


def recipe_keys(method: str) -> set[str]:
    """The config keys of a method's own recipe (its source's values): an experiment may replace them only
    by naming them in ``make_run(replaces=...)``. ``pretrain.lr`` counts: a direct lr replaces the blr rule."""
    return (set(method_defaults(method)) - {"method.name"}) | {"pretrain.lr"} if method != CONTROL else set()


class RecipeOverrideError(ValueError):
    """An experiment sets part of a method's own recipe without declaring it."""


def make_run(experiment: str, method: str, backbone: str, stages: Iterable[str], *, seed: int = 0,
             setting: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
             replaces: Iterable[str] = (), init: str = "pretrain", own_finetune: bool = False) -> RunConfig:
    """One run: the method's own recipe first, then the experiment's ``overrides`` (dotted keys).

    ``own_finetune``: the method's own fine-tuning recipe too (:func:`finetune_defaults`; the ``own`` fine-tuning
    protocol), whose keys then count as the method's recipe like its pre-training ones.

    ``overrides`` may set a key of the method's own recipe (:func:`recipe_keys`) only when ``replaces`` names
    it: an experiment that sets epochs, sizes and data for every method cannot overwrite, say, SimMIM's
    betas by accident. ``method="random"`` is the random-initialisation control: no pre-training,
    ``init=random``.

    Raises:
        RecipeOverrideError: ``overrides`` sets recipe keys of ``method`` that ``replaces`` does not name.
    """
    overrides = dict(overrides or {})
    own = finetune_defaults(method, backbone) if own_finetune else {}
    undeclared = sorted(set(overrides) & (recipe_keys(method) | set(own)) - set(replaces))
    if undeclared:
        raise RecipeOverrideError(
            f"experiment '{experiment}' sets {', '.join(undeclared)} for {method}, which {method}'s own recipe "
            "sets (baselines/registry.py): drop them to keep the method's recipe, or name them in "
            "make_run(replaces=...) to replace them for every method on purpose")
    setting = dict(setting or {})
    cfg = RunConfig(experiment=experiment, seed=seed, stages=list(stages), init=init, setting=setting)
    cfg.model.backbone = backbone
    cfg.method.name = method
    cfg = apply_overrides(cfg, {**method_defaults(method, backbone), **own})
    cfg = normalize_stages(apply_overrides(cfg, overrides))
    cfg.name = run_name(method, backbone, setting, seed)
    return cfg


def normalize_stages(cfg: RunConfig) -> RunConfig:
    """Stages that follow from the method: the random-init control has no pre-training (``init=random``);
    a method that predicts visual tokens (BEiT) with the offline k-means tokenizer fits it first. Applied again
    after ``--set`` overrides."""
    if cfg.method.name == CONTROL:
        cfg.init = "random"
        cfg.stages = [s for s in cfg.stages if s not in ("tokenizer", "pretrain")]
    elif "pretrain" in cfg.stages and cfg.method.tokenizer == "kmeans" and method_card(cfg.method.name).uses_tokenizer:
        cfg.stages = ["tokenizer", *[s for s in cfg.stages if s != "tokenizer"]]
    return cfg
