"""The run configuration's types: one :class:`RunConfig` of nested dataclasses, and :class:`ConfigError`.

Each field's comment gives its meaning, its allowed values (declared once, as closed sets and ranges, in
:mod:`mixmim.config.choices`) and where its default comes from.

Units: learning rates are absolute per-parameter rates unless the name says ``blr`` (base lr, scaled by
``effective_batch / lr_scale_base``); epochs are full passes over the training set; sizes in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
