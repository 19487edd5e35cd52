"""A resumable supervised training loop for the fine-tuning and linear-probe stages.

Built from the engine's pieces (not copies): the recipe (:func:`~mixmim.engine.make_recipe`), the
per-iteration schedule (:func:`~mixmim.engine.lr_at_step` + :func:`~mixmim.engine.set_lr`, each group's
``lr_scale`` applied), precision (autocast, GradScaler for fp16), the resumable sampler and loader, running
totals, metrics, and the training checkpoint (model = the trainable part, optimizer, scaler, position, every
rank's RNG states, data position, totals, evaluation record).

``checkpoint-last.pth`` is written atomically at the start, after every epoch (after its evaluation) and at
the end; ``checkpoint-<epoch>.pth`` is kept every ``checkpoint_every`` epochs. A killed stage restarts at the
last completed epoch with the RNG states of that moment, so on the CPU (``num_workers=0``) a resumed stage
ends bitwise equal to an uninterrupted one. The validation set is evaluated after every epoch and, when
``max_steps`` stops a run inside an epoch, once more at the end; the last and the best evaluation are kept.
"""

from __future__ import annotations

import contextlib
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
from mixmim.data import ResumableSampler, build_loader, unpack_batch
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.checkpoint import LAST, TrainPosition
from mixmim.engine.distributed import DistEnv, barrier, gather_to_main
from mixmim.engine.metrics import MetricsLogger
from mixmim.engine.nonfinite import NonFiniteGuard, any_rank_nonfinite
from mixmim.engine.optim import set_lr
from mixmim.engine.precision import autocast, grad_scaler
from mixmim.engine.progress import StageProgress
from mixmim.engine.recipe import Recipe
from mixmim.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from mixmim.engine.schedule import lr_at_step
from mixmim.engine.totals import RunningTotals
from mixmim.evaluate.accuracy import evaluate_classifier
from mixmim.rundir import stage_dir

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


class ClassifierTraining:
    """One supervised stage in progress; :meth:`run` trains, evaluates and returns the summary."""

    def __init__(self, spec: TrainSpec, cfg: RunConfig, run_dir: str | Path, env: DistEnv, device: torch.device,
                 log_every: int = 10):  # fmt: skip
        self.spec, self.cfg, self.env, self.device, self.log_every = spec, cfg, env, device, log_every
        self.recipe = spec.recipe
        self.dir = stage_dir(run_dir, spec.stage)
        self.model = spec.model
        self.ddp = self.model
        if env.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.scaler = grad_scaler(self.recipe.precision, device)
        self.sampler = ResumableSampler(spec.train_set, env.world_size, env.rank, shuffle=True, seed=cfg.seed)
        self.metrics = MetricsLogger(self.dir, enabled=env.is_main)
        self.totals = RunningTotals(device)
        self.position = TrainPosition()
        self.evals = EvalRecord()
        self.pending_rng: dict[str, Any] | None = None  # restored right before the next batch is drawn
        self.guard = NonFiniteGuard("stop")
        self.progress = StageProgress(Path(run_dir).name, spec.stage, self.recipe.epochs, self.recipe.iters_per_epoch,
                                      env.is_main)  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to the end of the recipe (resuming from ``checkpoint-last.pth``); return :meth:`summary`."""
        if self.env.is_main:
            ckpt_io.remove_partial_checkpoints(self.dir)
        latest = ckpt_io.load_latest_checkpoint(self.dir)  # on the CPU: RNG states must stay there
        if latest is not None:
            self.resume(*latest)
        else:
            self.fresh_start()
        while not self.finished():
            self.train_epoch()
        if self.evals.last_step != self.position.global_step:
            self.evaluate()
        self.save_checkpoint()
        self.metrics.close()
        return self.summary()

    def finished(self) -> bool:
        max_steps, pos = self.recipe.max_steps, self.position
        return pos.epoch >= self.recipe.epochs or bool(max_steps and pos.global_step >= max_steps)

    def fresh_start(self) -> None:
        seed_everything(self.cfg.seed + self.env.rank)
        self.metrics.rewind(0)
        self.save_checkpoint()
        logger.info("%s from the start: %s", self.spec.stage, self.recipe)

    def resume(self, ckpt: dict[str, Any], path: Path) -> None:
        self.position = ckpt_io.restore_training_checkpoint(ckpt, self.spec.trainable, self.spec.optimizer,
                                                            self.scaler)  # fmt: skip
        counters = ckpt["counters"]
        self.totals.load_state_dict({k: v for k, v in counters.items() if not k.startswith(EVAL_PREFIX)})
        self.evals = EvalRecord.from_counters(counters)
        changed = {k: (self.spec.config[k], v) for k, v in ckpt["config"].items()
                   if k in self.spec.config and self.spec.config[k] != v}  # fmt: skip
        if changed:
            logger.warning("resuming %s with a changed config {key: (now, then)}: %s", self.spec.stage, changed)
        if len(ckpt["rng"]) == self.env.world_size:
            self.pending_rng = ckpt["rng"][self.env.rank]
        else:
            logger.warning("checkpoint holds RNG states of %d ranks, running %d: reseeding (not bit-exact)",
                           len(ckpt["rng"]), self.env.world_size)  # fmt: skip
            seed_everything(self.cfg.seed + self.env.rank + 7919 * self.position.global_step)
        self.metrics.rewind(self.position.global_step)
        logger.info("%s resumed from %s at %s", self.spec.stage, path, self.position)

    # -- training ----------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        r, pos = self.recipe, self.position
        self.sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * r.batch_size)
        loader_seed = (self.cfg.seed * 1_000_003 + pos.epoch) * 4099 + self.env.rank
        loader = build_loader(self.spec.train_set, r.batch_size, self.sampler, self.cfg.data.num_workers,
                              drop_last=True, seed=loader_seed)  # fmt: skip
        if self.pending_rng is not None:  # exactly where the interrupted run drew its next batch
            restore_rng_state(self.pending_rng)
            self.pending_rng = None
        self.model.train()
        self.progress.start_epoch(pos.epoch, pos.step_in_epoch)
        batches = iter(loader)
        while pos.step_in_epoch < r.iters_per_epoch and not self.finished():
            images, labels, corrupt = unpack_batch(next(batches))
            loss = self.micro_step(images.to(self.device, non_blocking=True), labels.to(self.device))
            self.totals.add_batch(loss, corrupt)
            pos.step_in_epoch += 1
            self.progress.step(loss)
            if pos.step_in_epoch % r.accum_iter == 0:
                self.optimizer_step()
        if pos.step_in_epoch >= r.iters_per_epoch:
            self.end_epoch()

    def micro_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Forward and backward of one micro-batch (images [B,3,H,W], labels [B]); return its loss."""
        r = self.recipe
        last_of_group = (self.position.step_in_epoch + 1) % r.accum_iter == 0
        sync = contextlib.nullcontext() if last_of_group or not self.env.distributed else self.ddp.no_sync()
        targets: torch.Tensor = labels
        if self.spec.mixup is not None:
            images, targets = self.spec.mixup(images, labels)  # targets: [B, classes], soft
        with sync:
            with autocast(r.precision, self.device):
                loss = self.spec.criterion(self.ddp(images), targets)
            value = float(loss.detach().float().item())
            if any_rank_nonfinite(value, self.device):
                self.spec.optimizer.zero_grad(set_to_none=True)
                pos = self.position
                where = f"epoch {pos.epoch}, iteration {pos.step_in_epoch}"
                self.guard.handle(value, pos.global_step + 1, where, self.dir / LAST, pos.global_step)
            self.scaler.scale(loss / r.accum_iter).backward()
        return value

    def optimizer_step(self) -> None:
        r, pos, optimizer = self.recipe, self.position, self.spec.optimizer
        lr = lr_at_step(pos.global_step, r.total_steps, r.warmup_steps, r.lr, r.min_lr)
        set_lr(optimizer, lr)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        pos.global_step += 1
        self.totals.values["images"] += r.effective_batch
        if pos.global_step % self.log_every == 0:
            self.totals.sync()
            epoch = round(pos.epoch + pos.step_in_epoch / r.iters_per_epoch, 4)
            record = {"step": pos.global_step, "epoch": epoch, "loss": self.totals.take_window_loss(), "lr": lr}
            self.metrics.log(record, prefix=f"{self.spec.stage}/")

    def end_epoch(self) -> None:
        pos = self.position
        self.totals.sync()
        loss = self.totals.close_epoch()
        pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
        self.metrics.log({"step": pos.global_step, "epoch": pos.epoch, "epoch_loss": loss},
                         prefix=f"{self.spec.stage}/")  # fmt: skip
        self.progress.end_epoch(loss)
        self.evaluate()
        every = self.spec.checkpoint_every
        keep = every and pos.epoch % every == 0
        self.save_checkpoint([ckpt_io.epoch_checkpoint_name(pos.epoch)] if keep else [])

    def evaluate(self) -> dict[str, float]:
        """Validation top-1/top-5/loss now; recorded in :attr:`evals` and ``metrics.jsonl``."""
        pos, r = self.position, self.recipe
        stats = evaluate_classifier(self.model, self.spec.val_set, self.spec.eval_batch_size, self.device,
                                    r.precision, self.env, self.cfg.data.num_workers)  # fmt: skip
        epoch = round(pos.epoch + pos.step_in_epoch / r.iters_per_epoch, 4)
        self.evals.update(stats, epoch, pos.global_step)
        record = {
            "step": pos.global_step,
            "epoch": epoch,
            **{f"val_{k}": stats[k] for k in ("top1", "top5", "loss")},
        }
        self.metrics.log(record, prefix=f"{self.spec.stage}/")
        logger.info("%s epoch %.2f: val top-1 %.2f%%, top-5 %.2f%%", self.spec.stage, epoch, stats["top1"],
                    stats["top5"])  # fmt: skip
        return stats

    # -- checkpoints and results -------------------------------------------------------------------------
    def save_checkpoint(self, extra_names: list[str] | tuple[str, ...] = ()) -> None:
        """Write ``checkpoint-last.pth`` (and ``extra_names``) from rank 0 with every rank's RNG states."""
        self.totals.sync()
        pos = self.position
        rng = gather_to_main(capture_rng_state())
        if self.env.is_main:
            sampler = {
                "seed": self.cfg.seed,
                "epoch": pos.epoch,
                "start": pos.step_in_epoch * self.recipe.batch_size,
            }
            counters = {**self.totals.state_dict(), **self.evals.counters()}
            state = ckpt_io.training_checkpoint(self.spec.trainable, self.spec.optimizer, self.scaler, pos, rng,
                                                sampler, counters, self.spec.config)  # fmt: skip
            for name in (LAST, *extra_names):
                ckpt_io.atomic_torch_save(state, self.dir / name)
        barrier()

    def summary(self) -> dict[str, Any]:
        """Metrics and the recipe actually run (steps, epochs done, wall time, throughput)."""
        r, pos, e, v = self.recipe, self.position, self.evals, self.totals.values
        metrics = {
            "top1": e.last_top1,
            "top5": e.last_top5,
            "val_loss": e.last_loss,
            "best_top1": e.best_top1,
            "best_top5": e.best_top5,
            "best_epoch": e.best_epoch,
            "train_loss": self.totals.final_loss(),
            "corrupt_images": int(v["corrupt_images"]),
        }
        return {
            "metrics": metrics,
            "steps": pos.global_step,
            "epochs_done": pos.global_step / r.steps_per_epoch,
            "wall_time_s": v["wall_time_s"],
            "images_per_s": self.totals.images_per_s(),
        }
