"""Typed run configuration: nested dataclasses, merged and overridden with OmegaConf.

A run's configuration is one :class:`RunConfig`. Experiments build it in Python; users change it with
``key=value`` overrides (``pretrain.epochs=10``, ``method.mask_ratio=0.75``). Overrides are type-checked
against the dataclass fields, and an unknown key fails with the closest valid keys.

Units: learning rates are absolute per-parameter rates unless the name says ``blr`` (base lr, scaled by
``effective_batch / lr_scale_base``); epochs are full passes over the training set; sizes in pixels.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mixmim.backbone_names import DEPRECATED_BACKBONE_NAMES
from mixmim.runs.rendezvous import tasks_per_node


@dataclass
class ModelConfig:
    """The backbone: a name from ``mixmim.backbones.BACKBONES``."""

    backbone: str = "mixmim_tiny_32"
    img_size: int = 0  # 0: the backbone's default resolution
    drop_path: float = 0.0
    grad_checkpointing: bool = False  # recompute block activations in backward (memory for L/H; exact)
    # The baselines' own ViT options (plain ViT only; defaults: the shared ViT; docs/methods.md "switches"):
    layer_scale: float = 0.0  # layer-scale init (SimMIM/BEiT ViT-B: 0.1); 0: none
    abs_pos_emb: bool = True  # False: no absolute position embedding (SimMIM/BEiT)
    rel_pos_bias: str = "none"  # none | shared (SimMIM/BEiT pre-training) | layer (one per block: their fine-tuning)
    global_pool: str = "avg"  # avg | token (the cls token: MAE's linear probe, BEiT --use_cls)
    fc_norm: bool = False  # pool, then a LayerNorm, instead of the final norm (MAE/BEiT fine-tuning)
    train_pos_embed: bool = False  # the sin-cos position embedding as a trained parameter (MAE fine-tuning)


@dataclass
class MethodConfig:
    """The pre-training method and its options. Fields a method does not use are ignored by it.

    Method defaults (the source paper's values) are applied by the experiment through
    ``baselines.method_defaults(name)``; the values here are MixMIM's (official-mixmim.md).
    """

    name: str = "mixmim"  # a method card's name (baselines/cards/<name>.py) or random (the random-init control)
    mask_ratio: float = 0.5
    mask_unit: int = 0  # px; 0: the backbone's final stride (32 px for MixMIM at 224)
    mask_strategy: str = "random"  # random | block (ablation-mask-strategy; BEiT: blockwise)
    mask_type: str = "mix"  # MixMIM ablation-mask-type: mix | mask_token | zero | noise
    norm_pix_loss: bool = True
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    dual_reconstruction: bool = True  # False: reconstruct only the first image of each mix
    mix_embedding: bool = False  # True: mix embedding instead of masked self-attention
    tokenizer: str = "kmeans"  # BEiT: kmeans (fitted offline) | dalle (local weights file)
    tokenizer_path: str = ""  # BEiT with the DALL-E tokenizer: path to its encoder weights
    vocab_size: int = 8192


@dataclass
class DataConfig:
    """Where the images come from. ``dataset=digits`` is the built-in dataset (no download)."""

    dataset: str = "digits"  # digits | folder
    root: str = ""  # ImageFolder root with train/ and val/ (dataset=folder)
    num_workers: int = 0
    on_corrupt: str = "skip"  # skip (warn and count) | fail
    max_train_images: int = 0  # 0: all
    subset: str = ""  # dataset=folder: keep only a named class list (imagenet100: CMC's; mixmim.data.subsets)
    digits_size: int = 32  # px: the built-in 8x8 digits are upsampled (bicubic) to this size
    crop_min_scale: float = 0.2  # RandomResizedCrop lower area bound in pre-training (official: 0.2)
    crop_interpolation: str = "bicubic"  # pre-training crop resize: bicubic | bilinear (SimMIM)
    color_jitter: float = 0.0  # pre-training ColorJitter(c, c, c) before the crop (BEiT: 0.4); 0: none
    decode: str = "cpu"  # pre-training images: cpu (Pillow in the workers) | gpu (JPEG bytes, decode_jpeg on the
    # device in the step: mixmim.data.gpu_decode), pre-training and the linear probe's training split (folder
    # data of JPEGs, a CUDA device, no finetune stage); evaluation sets and kNN always decode on the CPU


@dataclass
class PretrainConfig:
    """Pre-training schedule and optimiser (official MixMIM-B recipe in ``imagenet-main``)."""

    epochs: int = 600
    warmup_epochs: int = 40
    max_steps: int = 0  # 0: no limit; >0 stops early (debug variants, benchmarks)
    batch_size: int = 128  # per GPU
    accum_iter: int = 1
    blr: float = 1.5e-4
    lr: float = 0.0  # absolute lr; 0: blr * effective_batch / lr_scale_base
    lr_scale_base: int = 256
    min_lr: float = 0.0
    schedule: str = "cosine"  # cosine | beit_cosine | timm_cosine | multistep (mixmim/engine/schedule.py)
    warmup_lr: float = 0.0  # lr where warm-up starts (cosine: always 0)
    lr_milestones: tuple[float, ...] = ()  # multistep: fractions of the run (SimMIM: epoch 700 of 800 = 0.875)
    lr_gamma: float = 0.1  # multistep: factor at each milestone
    scale_floor_lrs: bool = False  # warmup_lr and min_lr scale with the batch like the lr (SimMIM)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 0.0  # 0: no clipping
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    compile: str = "off"  # off | inductor | aot_eager | eager: torch.compile of the step (mixmim.engine.compile)
    checkpoint_every: int = 20  # epochs; "last" is written every epoch
    checkpoint_every_steps: int = 0  # >0: also write "last" every K optimizer steps (long epochs)
    nonfinite: str = "stop"  # stop | rollback
    official_quirks: bool = True  # decay mask_token and relative-position tables, as the official code


@dataclass
class FinetuneConfig:
    """End-to-end fine-tuning (official MixMIM-B recipe: 100 epochs, blr 5e-4, layer decay 0.7)."""

    epochs: int = 100
    warmup_epochs: int = 5
    max_steps: int = 0
    batch_size: int = 128
    accum_iter: int = 1
    blr: float = 5e-4
    lr: float = 0.0
    lr_scale_base: int = 256
    min_lr: float = 1e-6
    schedule: str = "cosine"  # cosine | beit_cosine | timm_cosine | multistep (mixmim/engine/schedule.py)
    warmup_lr: float = 0.0  # lr where warm-up starts (cosine: always 0)
    lr_milestones: tuple[float, ...] = ()  # multistep: fractions of the run (SimMIM: epoch 700 of 800 = 0.875)
    lr_gamma: float = 0.1  # multistep: factor at each milestone
    scale_floor_lrs: bool = False  # warmup_lr and min_lr scale with the batch like the lr (SimMIM)
    weight_decay: float = 0.05
    clip_grad: float = 0.0  # 0: no clipping (SimMIM's fine-tuning: 5.0, BEiT's: none)
    layer_decay: float = 0.7
    official_head_decay: bool = True  # head and final norm get layer id L (lr scale 0.7), as official
    official_quirks: bool = True  # weight-decay the relative-position tables, as the official fine-tuning
    layer_rule: str = "backbone"  # backbone (its layer_id: MixMIM's, MAE/BEiT's ViT rule) | swin (SimMIM's)
    drop_path: float = 0.1
    smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    randaug: str = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    crop_min_scale: float = 0.08  # RandomResizedCrop scale floor (timm's and the official 0.08); smoke: milder
    precision: str = "auto"
    compile: str = "off"  # off | inductor | aot_eager | eager (as pretrain.compile)
    checkpoint_every: int = 10


@dataclass
class LinearProbeConfig:
    """MAE's linear-probing protocol: frozen encoder, BatchNorm (no affine) + linear head, LARS."""

    epochs: int = 90
    warmup_epochs: int = 10
    max_steps: int = 0
    batch_size: int = 1024
    blr: float = 0.1
    lr: float = 0.0
    lr_scale_base: int = 256
    weight_decay: float = 0.0
    optimizer: str = "lars"  # lars | sgd
    crop_min_scale: float = 0.08  # RandomResizedCrop scale floor (MAE: 0.08); small images want milder crops
    crop: str = "torchvision"  # torchvision (RandomResizedCrop, 10 tries) | mae (MAE's util/crop.py: one draw)
    features: str = "pooled"  # pooled (the backbone's head pooling) | cls_token (after the final norm: MAE's)
    precision: str = "auto"
    compile: str = "off"  # off | inductor | aot_eager | eager (as pretrain.compile)


@dataclass
class KNNConfig:
    """kNN on frozen, L2-normalised features (cosine similarity)."""

    k: int = 20
    temperature: float = 0.07
    batch_size: int = 256


@dataclass
class CocoConfig:
    """Detection transfer (Mask R-CNN). engine: torchvision (built-in) | detectron2."""

    engine: str = "torchvision"
    root: str = ""  # COCO root (annotations/ + images); empty: the built-in tiny dataset
    epochs: int = 100
    max_steps: int = 0
    batch_size: int = 16
    blr: float = 1e-4
    lr: float = 0.0
    layer_decay: float = 0.7
    drop_path: float = 0.1
    img_size: int = 1024
    # Added for mixmim.transfer (docs/coco.md): batch_size is images per step over all GPUs, lr = blr * batch / 64.
    attention: str = "window_global"  # window_global | global | window: hierarchical stages 3-4 at img_size;
    # plain ViTs: window_global = ViTDet's backbone (mixmim/transfer/vitdet.py), global = the ViT as pre-trained
    heads: str = "standard"  # standard | compact (narrow heads, few proposals: built-in CPU runs)
    weight_decay: float = 0.1
    warmup_steps: int = 250
    precision: str = "auto"  # auto (AMP bf16/fp16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    score_thresh: float = 0.05  # test score threshold of both engines (their default 0.05); debug: 0.001
    lsj: bool = True  # detectron2: ViTDet's large-scale jitter (0.1-2.0); False: flip + resize (debug, built-in)
    nonfinite: str = "stop"  # built-in engine: stop | rollback on a NaN/inf loss (as pretrain.nonfinite)


@dataclass
class LaunchConfig:
    """Where stages run. Slurm fields map to submitit's ``slurm_*`` parameters."""

    executor: str = "local"  # local | slurm | debug
    partition: str = ""
    account: str = ""
    qos: str = ""
    time_min: int = 60 * 24
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 0  # processes (ranks) per node; 0: gpus_per_node, or 1 without GPUs
    cpus_per_task: int = 8
    mem_gb: int = 0  # 0: the partition's default
    constraint: str = ""
    max_num_timeout: int = 10
    # Multi-node: the interface gloo and NCCL bind to (exported as GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME in
    # the job); "": the job's environment decides (those variables if set, else gloo takes the address the
    # node's host name resolves to and NCCL picks an interface itself)
    network_interface: str = ""
    slurm_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """One run of an experiment: a method on a backbone at one setting and seed, and its stages."""

    experiment: str = ""
    name: str = ""
    seed: int = 0
    stages: list[str] = field(default_factory=lambda: ["pretrain", "linprobe", "knn"])
    init: str = "pretrain"  # pretrain (this run's checkpoint) | run:<base> (a sibling run's) | random | a path
    setting: dict[str, Any] = field(default_factory=dict)  # the ablated values, for the tables
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    linprobe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    coco: CocoConfig = field(default_factory=CocoConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it and what is allowed."""


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
        raise ConfigError(f"'{key}' is not a closed set of mixmim/config.py")
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
        raise ConfigError(f"the registry of '{key}' holds {sorted(names)} but mixmim/config.py allows "
                          f"{sorted(declared)}: add or remove {sorted(names ^ declared)} on both sides")


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
