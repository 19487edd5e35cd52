"""What each rank of the multi-rank checks runs (imported by spawned processes, so module-level functions only).

:func:`two_rank_checks` is the body of every rank of one elastic launch of ``test_two_ranks.py``,
:func:`resume_checks` of ``test_three_ranks.py``; :func:`scaling_pretrain`,
:func:`scaling_finetune`, :func:`knn_figures` and :func:`probe_figures` are also called by the test with one
process (no process group) for the reference figures.

How the gradient-scaling comparison is made exact: every source of randomness that would depend on the
rank or on the batch composition is removed, while the real stage code (task, ``Trainer``, DDP, parameter
groups, schedule, AdamW) runs unchanged:

- the data are the digits with the *evaluation* transform (resize + center crop: no random augmentation);
- the order is :class:`mixmim.data.ResumableSampler`'s, so 2 ranks x batch ``b`` see step by step the same
  images as 1 rank x batch ``2b``;
- pre-training is MAE (a per-sample loss: MSE over each sample's masked patches, the same count in every
  sample, so the mean of the two ranks' means is the mean over the global batch) with a mask that is a
  function of the sample's pixels (:func:`sample_masks`), not of a generator that runs per rank;
- fine-tuning runs without Mixup/CutMix (which pair images *inside* a batch), label smoothing, drop path
  or random erasing, on a LayerNorm backbone (no batch statistics).

DDP averages the ranks' gradients, so both runs take the same optimizer steps up to float rounding. AdamW's
update barely depends on the gradient's scale, so the checks compare its moment estimates too (``exp_avg``
is ``(1 - beta1) * g`` after a step): a sum instead of a mean over ranks would show there.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from baselines import build_method
from experiments.definitions.smoke import smoke
from mixmim.backbones import create_backbone
from mixmim.config import DataConfig, RunConfig
from mixmim.data import build_dataset, eval_transform, finetune_criterion
from mixmim.engine.checkpoint import load_latest_checkpoint
from mixmim.engine.distributed import DistEnv, default_device, init_distributed
from mixmim.engine.optim import build_adamw
from mixmim.engine.recipe import make_recipe
from mixmim.engine.trainer import Trainer
from mixmim.evaluate.accuracy import evaluate_classifier
from mixmim.evaluate.features import extract_features
from mixmim.evaluate.knn import knn_accuracy
from mixmim.evaluate.layer_decay import finetune_param_groups
from mixmim.evaluate.linprobe import ProbeModel
from mixmim.evaluate.train_loop import TrainSpec, train_classifier
from mixmim.pretrain.task import PretrainTask

GLOBAL_BATCH = 16  # images per micro-step, all ranks together
TRAIN_IMAGES = 64
EVAL_IMAGES = 101  # odd: the two ranks' shards differ in size (nothing padded, nothing dropped)
STEPS = 3


def smoke_config(method: str = "mae") -> RunConfig:
    """The ``smoke`` debug run of ``method`` (mixmim_tiny_32, CPU-sized decoder), trimmed to :data:`STEPS`."""
    cfg = copy.deepcopy(next(run for run in smoke("debug").runs if run.method.name == method))
    cfg.data.max_train_images, cfg.data.num_workers = TRAIN_IMAGES, 0
    cfg.pretrain.max_steps = cfg.finetune.max_steps = STEPS
    return cfg


def digits(split: str, images: int) -> Dataset:
    """The first ``images`` built-in digits of ``split`` at 32 px with the evaluation transform (deterministic:
    no random crops or flips)."""
    return Subset(build_dataset(DataConfig(), split, eval_transform(32)), range(images))


def sample_masks(images: torch.Tensor, grid: tuple[int, int], ratio: float) -> torch.Tensor:
    """[B, h, w] bool masks (True = removed), each a function of its own image [3, H, W] only.

    The ``L - int(L * (1 - ratio))`` cells with the largest score ``image . projection`` are removed (a fixed
    projection per cell, drawn once from seed 0), so a sample's mask does not depend on its batch or rank.
    """
    cells = grid[0] * grid[1]
    projection = torch.randn(images[0].numel(), cells, generator=torch.Generator().manual_seed(0))
    scores = images.flatten(1).double() @ projection.double().to(images.device)  # [B, L]
    removed = cells - int(cells * (1 - ratio))
    mask = torch.zeros(len(images), cells, dtype=torch.bool, device=images.device)
    mask.scatter_(1, scores.topk(removed, dim=1).indices, True)
    return mask.view(-1, *grid)


class SampleMaskPretrain(PretrainTask):
    """MAE pre-training whose masks are :func:`sample_masks` of the batch's images."""

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        mask = sample_masks(inputs, self.method.mask_grid, self.method.mask_ratio)
        return model(inputs, mask=mask)["loss"]


def scaling_pretrain(out: Path, env: DistEnv) -> dict[str, torch.Tensor]:
    """:data:`STEPS` MAE steps of :data:`GLOBAL_BATCH` images over ``env``'s ranks; :func:`trained_state`."""
    cfg = smoke_config("mae")
    cfg.pretrain.batch_size = GLOBAL_BATCH // env.world_size
    method = build_method(cfg)
    task = SampleMaskPretrain(method, digits("train", TRAIN_IMAGES), cfg, out, env, torch.device("cpu"))
    Trainer(task, cfg.seed, out / "pretrain", out.name, env, task.device).run()
    return trained_state(method, task.optimizer)


def scaling_finetune(out: Path, env: DistEnv) -> dict[str, torch.Tensor]:
    """:data:`STEPS` fine-tuning steps (layer decay, AdamW; no Mixup, smoothing or drop path);
    :func:`trained_state`."""
    cfg = smoke_config("mae")
    ft = cfg.finetune
    ft.batch_size = GLOBAL_BATCH // env.world_size
    assert ft.mixup == ft.cutmix == ft.smoothing == ft.drop_path == ft.reprob == 0  # the smoke recipe's
    torch.manual_seed(cfg.seed)
    backbone = create_backbone(cfg.model.backbone, num_classes=10, drop_path_rate=0.0)
    train_set, val_set = digits("train", TRAIN_IMAGES), digits("val", EVAL_IMAGES)
    spec = TrainSpec(stage="finetune", model=backbone, trainable=backbone,
                     optimizer=build_adamw(finetune_param_groups(backbone, ft)), criterion=finetune_criterion(ft),
                     train_set=train_set, val_set=val_set,
                     recipe=make_recipe(ft, env.world_size, torch.device("cpu"), len(train_set)),
                     eval_batch_size=16)  # fmt: skip
    train_classifier(spec, cfg, out, env, torch.device("cpu"))
    return trained_state(backbone, spec.optimizer)


def trained_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The weights (by name) and the optimizer's per-parameter tensors (``opt.<index>.<name>``)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for index, tensors in optimizer.state_dict()["state"].items():
        state.update({f"opt.{index}.{k}": v.clone() for k, v in tensors.items() if torch.is_tensor(v) and v.ndim})
    return state


def frozen_encoder() -> nn.Module:
    torch.manual_seed(1)
    return create_backbone("mixmim_tiny_32", num_classes=0)


def knn_figures(env: DistEnv) -> dict[str, Any]:
    """kNN top-1/top-5 of a random encoder (train = val digits, :data:`EVAL_IMAGES`), gathered on rank 0."""
    encoder, device = frozen_encoder(), torch.device("cpu")
    train_x, train_y = extract_features(encoder, digits("train", EVAL_IMAGES), 16, device, env=env)
    val_x, val_y = extract_features(encoder, digits("val", EVAL_IMAGES), 16, device, env=env)
    if not env.is_main:
        return {}
    return {"features": train_x, "labels": train_y, "val_labels": val_y,
            **knn_accuracy(train_x, train_y, val_x, val_y, 10, k=5)}  # fmt: skip


def probe_figures(env: DistEnv) -> dict[str, float]:
    """Evaluation of a probe (random encoder, seeded head) on :data:`EVAL_IMAGES` val digits, summed over ranks."""
    model = ProbeModel(frozen_encoder(), 10)
    return evaluate_classifier(model, digits("val", EVAL_IMAGES), 16, torch.device("cpu"), env=env)


def two_rank_checks(out: str) -> dict[str, Any]:
    """Every rank's body: the scaling runs, kNN and probe figures; rank 0 returns them (the others: {})."""
    torch.set_num_threads(1)
    env = init_distributed()
    assert env.world_size == 2 and default_device(env).type == "cpu"
    figures = {
        "pretrain": scaling_pretrain(Path(out) / "pretrain-2", env),
        "finetune": scaling_finetune(Path(out) / "finetune-2", env),
        "knn": knn_figures(env),
        "probe": probe_figures(env),
    }
    return figures if env.is_main else {}


def mae_pretrain(out: Path, env: DistEnv, max_steps: int) -> dict[str, torch.Tensor]:
    """MAE's smoke pre-training (random masks) on ``env``'s ranks, 4 images per rank, a checkpoint every step,
    resumed from ``out``'s checkpoint if it has one, to ``max_steps``; :func:`trained_state`."""
    cfg = smoke_config("mae")
    cfg.pretrain.batch_size, cfg.pretrain.max_steps, cfg.pretrain.checkpoint_every_steps = 4, max_steps, 1
    method = build_method(cfg)
    task = PretrainTask(method, digits("train", TRAIN_IMAGES), cfg, out, env, torch.device("cpu"))
    Trainer(task, cfg.seed, out / "pretrain", out.name, env, task.device).run()
    return trained_state(method, task.optimizer)


def resume_checks(out: str, steps: int) -> dict[str, Any]:
    """Every rank's body: ``steps`` steps of :func:`mae_pretrain` in one go (twice: the collectives are
    deterministic), and the same stopped after ``steps - 1`` steps then resumed by a new trainer (and so a new
    DDP wrapper) in the same folder; rank 0 returns the states and the step the resumed run started from (the
    others: {})."""
    torch.set_num_threads(1)
    env = init_distributed()
    uninterrupted = mae_pretrain(Path(out) / "uninterrupted", env, steps)
    again = mae_pretrain(Path(out) / "again", env, steps)
    mae_pretrain(Path(out) / "resumed", env, steps - 1)
    ckpt, _ = load_latest_checkpoint(Path(out) / "resumed" / "pretrain")
    resumed = mae_pretrain(Path(out) / "resumed", env, steps)
    figures = {"world_size": env.world_size, "uninterrupted": uninterrupted, "again": again, "resumed": resumed,
               "resumed_from": ckpt["position"]["global_step"]}  # fmt: skip
    return figures if env.is_main else {}


def fail_on_rank_one() -> None:
    """Rank 1 raises while rank 0 waits at a barrier: the launch must fail, not hang."""
    init_distributed()
    if torch.distributed.get_rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    torch.distributed.barrier()
