"""The fine-tuning and linear-probe stages as a task of the shared :class:`~mixmim.engine.trainer.Trainer`.

:class:`TrainSpec` says what a supervised stage trains (model, trainable part, optimizer over its
parameter groups with each group's ``lr_scale``, criterion, Mixup, recipe); :class:`ClassifierTask` turns a
batch into a loss and evaluates the validation set after every epoch (before that epoch's checkpoint) and,
when ``max_steps`` stops a run inside an epoch, once more at the end; the last and the best evaluation are
kept, and saved in the checkpoints' counters. Resume, checkpoints, precision, the schedule and the
non-finite guard (``stop``) are the trainer's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mixmim.config import RunConfig
from mixmim.data import dataset_counts, dataset_fingerprint
from mixmim.data.gpu_decode import loader_collate
from mixmim.engine.distributed import DistEnv
from mixmim.engine.recipe import Recipe
from mixmim.engine.stage import StageResult, recipe_fields
from mixmim.engine.trainer import Trainer, TrainTask
from mixmim.evaluate.accuracy import evaluate_classifier
from mixmim.runs.rundir import stage_dir

logger = logging.getLogger(__name__)

EVAL_PREFIX = "eval/"  # checkpoint counters of the evaluation record carry this prefix


@dataclass
class TrainSpec:
    """What a supervised stage trains.

    Attributes:
        stage: ``finetune`` | ``linprobe`` (the stage folder).
        model: images [B,3,H,W] -> logits [B, classes], on the device; ``model.train()`` must put every
            part in its training mode (a linear probe keeps its frozen encoder in eval mode).
        trainable: the part the optimizer updates; checkpoints hold its state dict (a probe: the head only).
        optimizer: over ``trainable``'s parameter groups, each with an ``lr_scale``.
        criterion: (logits, targets) -> loss; targets are soft [B, classes] when ``mixup`` is set.
        mixup: (images, labels) -> (images, soft targets), or None.
        config: the stage's config as a plain dict (saved in checkpoints; a changed config is reported).
        checkpoint_every: keep ``checkpoint-<epoch>.pth`` every this many epochs (0: only ``last``).
        clip_grad: clip the gradient norm of ``trainable`` to this before each update (0: no clipping).
        compile: ``off`` | a ``torch.compile`` backend for ``model``'s forward (``mixmim.engine.compile``).
    """

    stage: str
    model: nn.Module
    trainable: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    train_set: Dataset
    val_set: Dataset
    recipe: Recipe
    eval_batch_size: int
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 0
    clip_grad: float = 0.0
    compile: str = "off"


@dataclass
class EvalRecord:
    """The last and the best validation results (top-1/top-5 in percent), and when they were measured."""

    last_top1: float = math.nan
    last_top5: float = math.nan
    last_loss: float = math.nan
    last_step: float = -1.0
    best_top1: float = math.nan
    best_top5: float = math.nan
    best_epoch: float = math.nan

    def update(self, stats: dict[str, float], epoch: float, step: int) -> None:
        self.last_top1, self.last_top5, self.last_loss = stats["top1"], stats["top5"], stats["loss"]
        self.last_step = float(step)
        if math.isnan(self.best_top1) or stats["top1"] > self.best_top1:
            self.best_top1, self.best_top5, self.best_epoch = stats["top1"], stats["top5"], float(epoch)

    def counters(self) -> dict[str, float]:
        return {EVAL_PREFIX + k: float(v) for k, v in vars(self).items()}

    @classmethod
    def from_counters(cls, counters: dict[str, float]) -> EvalRecord:
        return cls(**{k[len(EVAL_PREFIX) :]: v for k, v in counters.items() if k.startswith(EVAL_PREFIX)})


class ClassifierTask(TrainTask):
    """A :class:`TrainSpec` as a :class:`~mixmim.engine.trainer.TrainTask`: Mixup, then the criterion of the
    logits; the validation set is evaluated after every epoch and once more at the end when ``max_steps``
    stopped the run inside an epoch."""

    def __init__(self, spec: TrainSpec, cfg: RunConfig, env: DistEnv, device: torch.device):
        self.spec, self.cfg, self.env, self.device = spec, cfg, env, device
        self.stage, self.module, self.trainable, self.optimizer = spec.stage, spec.model, spec.trainable, spec.optimizer
        self.recipe, self.train_set, self.config = spec.recipe, spec.train_set, spec.config
        self.collate_fn = loader_collate(spec.train_set, device)  # data.decode=gpu: JPEG bytes, decoded in the step
        self.checkpoint_every, self.clip_grad, self.compile = spec.checkpoint_every, spec.clip_grad, spec.compile
        self.evals = EvalRecord()

    def prepare(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.mixup is not None:
            return self.spec.mixup(images, labels)  # targets: [B, classes], soft
        return images, labels

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.spec.criterion(model(inputs), targets)

    def end_of_epoch(self, trainer: Trainer) -> None:
        self.evaluate(trainer)

    def before_finish(self, trainer: Trainer) -> None:
        if self.evals.last_step != trainer.position.global_step:
            self.evaluate(trainer)

    def counters(self) -> dict[str, float]:
        return self.evals.counters()

    def load_counters(self, counters: dict[str, float]) -> None:
        self.evals = EvalRecord.from_counters(counters)

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        """Validation top-1/top-5/loss now; recorded in :attr:`evals` and ``metrics.jsonl``."""
        stats = evaluate_classifier(self.module, self.spec.val_set, self.spec.eval_batch_size, self.device,
                                    self.recipe.precision, self.env, self.cfg.data.num_workers)  # fmt: skip
        epoch, step = trainer.epoch_fraction(), trainer.position.global_step
        self.evals.update(stats, epoch, step)
        record = {"step": step, "epoch": epoch, **{f"val_{k}": stats[k] for k in ("top1", "top5", "loss")}}
        trainer.metrics.log(record, prefix=trainer.prefix)
        logger.info("%s epoch %.2f: val top-1 %.2f%%, top-5 %.2f%%", self.stage, epoch, stats["top1"],
                    stats["top5"])  # fmt: skip
        return stats

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """Metrics and the recipe actually run (steps, epochs done, wall time, throughput)."""
        r, pos, e, totals = self.recipe, trainer.position, self.evals, trainer.totals
        metrics = {
            "top1": e.last_top1,
            "top5": e.last_top5,
            "val_loss": e.last_loss,
            "best_top1": e.best_top1,
            "best_top5": e.best_top5,
            "best_epoch": e.best_epoch,
            "train_loss": totals.final_loss(),
            "corrupt_images": int(totals.values["corrupt_images"]),
        }
        return {
            "metrics": metrics,
            "steps": pos.global_step,
            "epochs_done": pos.global_step / r.steps_per_epoch,
            "wall_time_s": totals.values["wall_time_s"],
            "images_per_s": totals.images_per_s(),
        }


def train_classifier(spec: TrainSpec, cfg: RunConfig, run_dir: str | Path, env: DistEnv, device: torch.device,
                     log_every: int = 10) -> dict[str, Any]:  # fmt: skip
    """Train ``spec`` with the shared :class:`~mixmim.engine.trainer.Trainer` (resuming from
    ``<run_dir>/<stage>/checkpoint-last.pth``); return :meth:`ClassifierTask.finish`'s summary."""
    task = ClassifierTask(spec, cfg, env, device)
    trainer = Trainer(task, cfg.seed, stage_dir(run_dir, spec.stage), Path(run_dir).name, env, device,
                      cfg.data.num_workers, log_every)  # fmt: skip
    return trainer.run()


def classifier_result(summary: dict[str, Any], recipe: Recipe, train_set: Dataset, source: Any,
                      extra: dict[str, Any]) -> StageResult:  # fmt: skip
    """The result of a fine-tuning or probing stage from :func:`train_classifier`'s summary: the recipe, the
    encoder's source (``init``, ``init_path``), steps and epochs done, throughput, then ``extra``."""
    classes, images = dataset_counts(train_set)
    return StageResult(
        metrics=summary["metrics"],
        recipe=recipe_fields(recipe),
        wall_time_s=summary["wall_time_s"],
        data_root=str(getattr(train_set, "root", "")),
        data_fingerprint=dataset_fingerprint(train_set),
        data_classes=classes,
        data_images=images,
        extra={
            **source.describe(),
            "steps": summary["steps"],
            "epochs": summary["epochs_done"],
            "epochs_planned": recipe.epochs,
            "images_per_s": summary["images_per_s"],
            **extra,
        },
    )
