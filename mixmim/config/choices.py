"""The allowed values of a run configuration: closed sets (:data:`CHOICES`, :data:`LIST_CHOICES`) and numeric
ranges (:data:`RANGES`), each declared once; :mod:`mixmim.config.validation` checks a config against them.

The registries that hold some of these names (backbones, stages, method cards) live above this torch-free
package: :func:`check_registry` and :func:`register_choices` are how they meet it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mixmim.backbone_names import DEPRECATED_BACKBONE_NAMES
from mixmim.config.schema import ConfigError, FinetuneConfig, LinearProbeConfig, PretrainConfig

# --- Closed sets and ranges, checked whenever a RunConfig is built (validate) and when a stage starts
# (mixmim.engine.stage.run_stage). Each set is declared here once; the implementations read it from here
# (mixmim.pretrain.method.MASK_TYPES is CHOICES["method.mask_type"], ...). Two sets name registries that live above
# this torch-free module (mixmim.backbones.BACKBONE_SPECS, experiments.stages.STAGES): each registry checks at import
# that it registers exactly these names (one error naming both). The method names are declared by the method
# registry itself, which mixmim/ may not import (baselines/cards: one card per method): it fills the set at its
# import (register_choices). Until then the set is empty and not checked; every process that builds or launches a
# method imports the registry first (experiments.spec, experiments.stages, baselines.build_method).
BACKBONE_NAMES = ("mixmim_base", "mixmim_large", "mixmim_huge", "mixmim_base_384", "mixmim_large_384",
                  "mixmim_tiny_32", "mixmim_small_64", "mixmim_vit_base_patch16", "mixmim_vit_large_patch16",
                  "mixmim_vit_huge_patch14", "mixmim_vit_tiny_patch4_32")  # mixmim.backbones.BACKBONE_SPECS
STAGE_NAMES = ("tokenizer", "pretrain", "finetune", "linprobe", "knn", "coco")  # experiments.stages.STAGES
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "beit_cosine", "timm_cosine", "multistep")
COMPILE_MODES = ("off", "inductor", "aot_eager", "eager")
CHOICES: dict[str, tuple[str, ...]] = {
    "model.backbone": BACKBONE_NAMES,
    "model.rel_pos_bias": ("none", "shared", "layer"),
    "model.global_pool": ("avg", "token"),
    "method.name": (),  # registered: baselines.registry (the method cards and the random-init control)
    "method.mask_strategy": ("random", "block"),
    "method.mask_type": ("mix", "mask_token", "zero", "noise"),
    "method.tokenizer": ("kmeans", "dalle"),
    "data.dataset": ("digits", "folder"),
    "data.on_corrupt": ("skip", "fail"),
    "data.subset": ("", "imagenet100"),
    "data.crop_interpolation": ("bicubic", "bilinear"),
    "data.decode": ("cpu", "gpu"),
    "pretrain.schedule": SCHEDULES, "finetune.schedule": SCHEDULES,
    "finetune.layer_rule": ("backbone", "swin"),
    "pretrain.precision": PRECISIONS, "finetune.precision": PRECISIONS, "linprobe.precision": PRECISIONS,
    "coco.precision": PRECISIONS,
    "pretrain.compile": COMPILE_MODES, "finetune.compile": COMPILE_MODES, "linprobe.compile": COMPILE_MODES,
    "pretrain.nonfinite": ("stop", "rollback"),
    "coco.nonfinite": ("stop", "rollback"),
    "linprobe.optimizer": ("lars", "sgd"),
    "linprobe.crop": ("torchvision", "mae"),
    "linprobe.features": ("pooled", "cls_token"),
    "coco.engine": ("torchvision", "detectron2"),
    "coco.attention": ("window_global", "global", "window"),
    "coco.heads": ("standard", "compact"),
    "launch.executor": ("local", "slurm", "debug"),
}
LIST_CHOICES: dict[str, tuple[str, ...]] = {"stages": STAGE_NAMES}
# Accepted but never offered (not in the allowed values an error lists, nor as the closest value): the old ViT
# names still build the same backbone, with a DeprecationWarning.
ACCEPTED_QUIETLY: dict[str, tuple[str, ...]] = {"model.backbone": tuple(DEPRECATED_BACKBONE_NAMES)}


@dataclass(frozen=True)
class Range:
    """A numeric range: ``low``/``high`` bounds (None: unbounded), open or closed at each end."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE, NON_NEGATIVE, AT_LEAST_ONE = Range(0, low_open=True), Range(0), Range(1)
FRACTION, RATE = Range(0, 1, low_open=True, high_open=True), Range(0, 1, high_open=True)  # (0, 1), [0, 1)
_STAGE_RANGES = {"epochs": POSITIVE, "warmup_epochs": NON_NEGATIVE, "max_steps": NON_NEGATIVE,
                 "batch_size": POSITIVE, "blr": NON_NEGATIVE, "lr": NON_NEGATIVE,  # lr 0: from blr (one > 0)
                 "lr_scale_base": POSITIVE, "min_lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
                 "warmup_lr": NON_NEGATIVE, "lr_gamma": Range(0, 1, low_open=True)}
RANGES: dict[str, Range] = {
    "seed": NON_NEGATIVE,
    "model.img_size": NON_NEGATIVE, "model.drop_path": RATE, "model.layer_scale": NON_NEGATIVE,
    "method.mask_ratio": FRACTION, "method.mask_unit": NON_NEGATIVE, "method.decoder_dim": POSITIVE,
    "method.decoder_depth": AT_LEAST_ONE, "method.decoder_heads": AT_LEAST_ONE, "method.vocab_size": Range(2),
    "data.num_workers": NON_NEGATIVE, "data.max_train_images": NON_NEGATIVE, "data.digits_size": POSITIVE,
    "data.crop_min_scale": Range(0, 1, low_open=True), "data.color_jitter": NON_NEGATIVE,
    **{f"{stage}.{key}": r for stage, section in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig),
                                                   ("linprobe", LinearProbeConfig))
       for key, r in _STAGE_RANGES.items() if key in section.__dataclass_fields__},
    "pretrain.accum_iter": AT_LEAST_ONE, "pretrain.clip_grad": NON_NEGATIVE, "pretrain.checkpoint_every": AT_LEAST_ONE,
    "pretrain.checkpoint_every_steps": NON_NEGATIVE, "pretrain.betas": RATE,
    "finetune.accum_iter": AT_LEAST_ONE, "finetune.clip_grad": NON_NEGATIVE,
    "finetune.layer_decay": Range(0, 1, low_open=True),
    "finetune.drop_path": RATE, "finetune.smoothing": RATE, "finetune.mixup": NON_NEGATIVE,
    "finetune.cutmix": NON_NEGATIVE, "finetune.reprob": Range(0, 1),
    "finetune.crop_min_scale": Range(0, 1, low_open=True),
    "finetune.checkpoint_every": AT_LEAST_ONE,
    "linprobe.crop_min_scale": Range(0, 1, low_open=True),
    "knn.k": AT_LEAST_ONE, "knn.temperature": POSITIVE, "knn.batch_size": POSITIVE,
    "coco.epochs": POSITIVE, "coco.max_steps": NON_NEGATIVE, "coco.batch_size": POSITIVE, "coco.blr": NON_NEGATIVE,
    "coco.lr": NON_NEGATIVE, "coco.layer_decay": Range(0, 1, low_open=True), "coco.drop_path": RATE,
    "coco.img_size": Range(32), "coco.score_thresh": Range(0, 1, high_open=True),
    "coco.weight_decay": NON_NEGATIVE, "coco.warmup_steps": NON_NEGATIVE,
    "launch.time_min": AT_LEAST_ONE, "launch.nodes": AT_LEAST_ONE, "launch.gpus_per_node": NON_NEGATIVE,
    "launch.tasks_per_node": NON_NEGATIVE, "launch.cpus_per_task": AT_LEAST_ONE, "launch.mem_gb": NON_NEGATIVE,
    "launch.max_num_timeout": NON_NEGATIVE,
}


def register_choices(key: str, names: Iterable[str]) -> None:
    """Declare the closed set ``key`` from the registry above this module that holds its names (the method cards:
    ``baselines.registry`` registers ``method.name`` at its import); checked from then on."""
    if key not in CHOICES:
        raise ConfigError(f"'{key}' is not a closed set of mixmim/config/choices.py")
    CHOICES[key] = tuple(names)


def check_registry(key: str, registered: Iterable[str]) -> None:
    """A registry above this module (backbones, stages) registers exactly the names of the closed set ``key``;
    called by each registry at import, so a name added on one side only fails at once, naming both sides.

    Raises:
        ConfigError: the registry and the closed set differ.
    """
    declared = set(LIST_CHOICES.get(key) or CHOICES[key])
    names = set(registered)
    if names != declared:
        raise ConfigError(f"the registry of '{key}' holds {sorted(names)} but mixmim/config/choices.py allows "
                          f"{sorted(declared)}: add or remove {sorted(names ^ declared)} on both sides")

