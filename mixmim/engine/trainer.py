"""The one training loop: a :class:`Trainer` runs a :class:`TrainTask` (pre-training, fine-tuning, linear probe).

The trainer owns what every stage shares: the data position and the resumable sampler, gradient
accumulation, AMP (autocast + a GradScaler for fp16), DDP, the per-step lr schedule
(:func:`~mixmim.engine.schedule.lr_at_step`, each group's ``lr_scale`` applied by
:func:`~mixmim.engine.optim.set_lr`), clipping, the non-finite guard (stop or roll back), running totals,
metrics (``metrics.jsonl`` + TensorBoard + the progress bar) and one checkpoint schema (the trainable
module, optimizer, scaler, position, sampler position, totals, the task's counters, every rank's RNG
states), written atomically: ``checkpoint-last.pth`` at the start, every ``checkpoint_every_steps``
optimizer steps, at every epoch end (after the task's evaluation) and at the end; ``checkpoint-<epoch>.pth``
every ``checkpoint_every`` epochs, always written before ``last`` (once ``last`` holds a position, so do the
others).

A task supplies what differs: how a batch becomes a loss (:meth:`TrainTask.prepare` outside autocast, then
:meth:`TrainTask.loss` inside it), the module the forward runs and the trainable part the optimizer and the
checkpoints hold, the optimizer over its parameter groups, the recipe, an optional end-of-epoch evaluation
and its RNG policy (:attr:`TrainTask.generator`, :meth:`TrainTask.reseed`).

Resume guarantee: a killed stage restarts from its newest readable checkpoint with the RNG states of that
moment, restored just before the next batch is drawn, so on the CPU (``num_workers=0``) a resumed stage ends
bitwise equal to an uninterrupted one (the data order is a function of ``(seed, epoch)`` and the loader
never draws from the global generator).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mixmim.data import ResumableSampler, build_loader, unpack_batch
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.checkpoint import LAST, TrainPosition
from mixmim.engine.distributed import DistEnv, barrier, gather_to_main
from mixmim.engine.metrics import MetricsLogger
from mixmim.engine.nonfinite import NonFiniteGuard, RollbackRequested, any_rank_nonfinite
from mixmim.engine.optim import set_lr
from mixmim.engine.precision import autocast, grad_scaler
from mixmim.engine.progress import StageProgress
from mixmim.engine.recipe import Recipe
from mixmim.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from mixmim.engine.schedule import lr_at_step
from mixmim.engine.totals import KEYS as TOTAL_KEYS
from mixmim.engine.totals import RunningTotals

__all__ = ["TrainTask", "Trainer"]

logger = logging.getLogger(__name__)


class TrainTask:
    """What a stage trains; subclass it and set the attributes (the hooks default to doing nothing).

    Attributes:
        stage: the stage folder and the metric prefix (``pretrain``, ``finetune``, ``linprobe``).
        module: what the forward runs, on the device; ``module.train()`` must put every part in its
            training mode (a linear probe keeps its frozen encoder in eval mode). DDP wraps it.
        trainable: the part the optimizer updates and the checkpoints hold (a probe: the head only).
        optimizer: over ``trainable``'s parameter groups, each with an ``lr_scale``.
        recipe: batch sizes, lr, schedule, precision, epochs, ``max_steps``.
        train_set: samples ``(image, label[, corrupt])``.
        config: the stage's config as a plain dict (saved in checkpoints; a changed config is reported).
        clip_grad: clip the gradient norm to this before each update (0: no clipping).
        nonfinite: ``stop`` | ``rollback`` (:class:`~mixmim.engine.nonfinite.NonFiniteGuard`).
        checkpoint_every: keep ``checkpoint-<epoch>.pth`` every this many epochs (0: only ``last``).
        checkpoint_every_steps: also write ``last`` every this many optimizer steps (0: never).
        find_unused_parameters: passed to DDP.
    """

    stage: str
    module: nn.Module
    trainable: nn.Module
    optimizer: torch.optim.Optimizer
    recipe: Recipe
    train_set: Dataset
    config: dict[str, Any]
    clip_grad: float = 0.0
    nonfinite: str = "stop"
    checkpoint_every: int = 0
    checkpoint_every_steps: int = 0
    find_unused_parameters: bool = False

    # -- the RNG policy ----------------------------------------------------------------------------------
    @property
    def generator(self) -> torch.Generator | None:
        """A private generator saved and restored with the global ones (a method's mask generator), or None."""
        return None

    def reseed(self, seed: int) -> None:
        """Seed every random stream the task draws from."""
        seed_everything(seed)

    # -- a batch to a loss -------------------------------------------------------------------------------
    def prepare(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of one micro-batch on the device (outside autocast: e.g. Mixup)."""
        return images, labels

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The scalar loss of one micro-batch; ``model`` is :attr:`module` or its DDP wrapper."""
        raise NotImplementedError

    # -- hooks -------------------------------------------------------------------------------------------
    def on_start(self, trainer: Trainer) -> None:
        """After the fresh start or the resume, before the first batch."""

    def end_of_epoch(self, trainer: Trainer) -> None:
        """After an epoch's totals are closed, before its checkpoint (an evaluation)."""

    def before_finish(self, trainer: Trainer) -> None:
        """After the last step, before the final checkpoint."""

    def counters(self) -> dict[str, float]:
        """The task's own counters, saved in checkpoints beside the totals (keys not in the totals')."""
        return {}

    def load_counters(self, counters: dict[str, float]) -> None:
        """Restore :meth:`counters` from a checkpoint's counters."""

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """After the final checkpoint: write the stage's outputs and return its result."""
        return {}


class Trainer:
    """Runs a :class:`TrainTask` to the end of its recipe, resuming from its stage folder; :meth:`run`."""

    def __init__(self, task: TrainTask, seed: int, stage_dir: Path, run_name: str, env: DistEnv,
                 device: torch.device, num_workers: int = 0, log_every: int = 10):  # fmt: skip
        self.task, self.seed, self.dir, self.env, self.device = task, seed, Path(stage_dir), env, device
        self.num_workers, self.log_every = num_workers, log_every
        self.recipe = task.recipe
        self.model: nn.Module = task.module  # the module the forward runs: the DDP wrapper when distributed
        if env.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                task.module,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=task.find_unused_parameters,
            )
        self.optimizer = task.optimizer
        self.scaler = grad_scaler(self.recipe.precision, device)
        self.sampler = ResumableSampler(task.train_set, env.world_size, env.rank, shuffle=True, seed=seed,
                                        batch_size=self.recipe.batch_size)  # fmt: skip
        self.metrics = MetricsLogger(self.dir, enabled=env.is_main)
        self.totals = RunningTotals(device)
        self.position = TrainPosition()
        self.guard = NonFiniteGuard(task.nonfinite)
        self.pending_rng: dict[str, Any] | None = None  # restored right before the next batch is drawn
        self.last_checkpoint_step = 0
        self.prefix = f"{task.stage}/"
        self.progress = StageProgress(run_name, task.stage, self.recipe.epochs, self.recipe.iters_per_epoch,
                                      env.is_main)  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to the end (resuming from the newest readable checkpoint); return :meth:`TrainTask.finish`."""
        if self.env.is_main:
            ckpt_io.remove_partial_checkpoints(self.dir)  # left by a run killed while writing
        latest = ckpt_io.load_latest_checkpoint(self.dir)  # the newest readable one, or None
        if latest is not None:
            self.resume(*latest)
        else:
            self.fresh_start()
        self.task.on_start(self)
        while not self.finished():
            try:
                self.train_epoch()
            except RollbackRequested as request:
                logger.warning("%s", request)
                self.rollback()
        self.task.before_finish(self)
        self.totals.sync()
        self.totals.final_loss()  # closes the corrupt-image count of a partial epoch before it is saved
        self.save_checkpoint()
        result = self.task.finish(self)
        self.metrics.close()
        barrier()
        return result

    def finished(self) -> bool:
        max_steps, pos = self.recipe.max_steps, self.position
        return pos.epoch >= self.recipe.epochs or bool(max_steps and pos.global_step >= max_steps)

    def fresh_start(self) -> None:
        self.task.reseed(self.seed + self.env.rank)
        self.metrics.rewind(0)
        self.save_checkpoint()  # step 0: the "last good checkpoint" before any update
        logger.info("%s from the start: %s", self.task.stage, self.recipe)

    def resume(self, ckpt: dict[str, Any], path: Path) -> None:
        self.load(ckpt)
        self.metrics.rewind(self.position.global_step)
        logger.info("%s resumed from %s at %s", self.task.stage, path, self.position)

    def load(self, ckpt: dict[str, Any]) -> None:
        """Restore model, optimizer, scaler, position and counters now, the RNG states before the next batch."""
        task = self.task
        self.position = ckpt_io.restore_training_checkpoint(ckpt, task.trainable, self.optimizer, self.scaler)
        counters = ckpt["counters"]
        self.totals.load_state_dict({k: v for k, v in counters.items() if k in TOTAL_KEYS})
        task.load_counters(counters)
        self.last_checkpoint_step = self.position.global_step
        changed = {k: (task.config[k], v) for k, v in ckpt["config"].items()
                   if k in task.config and task.config[k] != v}  # fmt: skip
        if changed:
            logger.warning("resuming %s with a changed config {key: (now, then)}: %s", task.stage, changed)
        if len(ckpt["rng"]) == self.env.world_size:
            self.pending_rng = ckpt["rng"][self.env.rank]
        else:
            logger.warning("checkpoint holds RNG states of %d ranks, running %d: reseeding (not bit-exact)",
                           len(ckpt["rng"]), self.env.world_size)  # fmt: skip
            task.reseed(self.seed + self.env.rank + 7919 * self.position.global_step)

    # -- training ----------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        r, pos = self.recipe, self.position
        self.sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * r.batch_size)
        loader_seed = (self.seed * 1_000_003 + pos.epoch) * 4099 + self.env.rank
        loader = build_loader(self.task.train_set, r.batch_size, self.sampler, self.num_workers, seed=loader_seed)
        if self.pending_rng is not None:  # exactly where the interrupted run drew its next batch
            restore_rng_state(self.pending_rng, self.task.generator)
            self.pending_rng = None
        self.task.module.train()
        self.progress.start_epoch(pos.epoch, pos.step_in_epoch)
        batches = iter(loader)
        while pos.step_in_epoch < r.iters_per_epoch and not self.finished():
            self.train_batch(*unpack_batch(next(batches)))
        if pos.step_in_epoch >= r.iters_per_epoch:
            self.end_epoch()

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor, corrupt: int = 0) -> None:
        """One micro-batch (images [B,3,H,W], labels [B] on any device; corrupt: unreadable images in it):
        forward, backward and, at the end of an accumulation group, the optimizer step; the position, totals
        and progress advance (the body of the training loop, also what ``bench`` times)."""
        pos = self.position
        loss = self.micro_step(images.to(self.device, non_blocking=True), labels.to(self.device))
        self.totals.add_batch(loss, corrupt)
        pos.step_in_epoch += 1
        self.progress.step(loss)
        if pos.step_in_epoch % self.recipe.accum_iter == 0:
            self.optimizer_step()

    def micro_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Forward and backward of one micro-batch (images [B,3,H,W], labels [B]); return its loss."""
        r = self.recipe
        last_of_group = (self.position.step_in_epoch + 1) % r.accum_iter == 0
        sync = contextlib.nullcontext() if last_of_group or not self.env.distributed else self.model.no_sync()
        inputs, targets = self.task.prepare(images, labels)
        with sync:
            with autocast(r.precision, self.device):
                loss = self.task.loss(self.model, inputs, targets)
            value = float(loss.detach().float().item())
            if any_rank_nonfinite(value, self.device):
                self.on_nonfinite(value)
            self.scaler.scale(loss / r.accum_iter).backward()
        return value

    def optimizer_step(self) -> None:
        r, pos, task = self.recipe, self.position, self.task
        lr = lr_at_step(pos.global_step, r.total_steps, r.warmup_steps, r.lr, r.min_lr)
        set_lr(self.optimizer, lr)
        if task.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(task.trainable.parameters(), task.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        pos.global_step += 1
        self.totals.values["images"] += r.effective_batch
        if pos.global_step % self.log_every == 0:
            self.totals.sync()
            epoch = round(pos.epoch + pos.step_in_epoch / r.iters_per_epoch, 4)
            record = {"step": pos.global_step, "epoch": epoch, "loss": self.totals.take_window_loss(), "lr": lr}
            self.metrics.log({**record, "images_per_s": self.totals.images_per_s()}, prefix=self.prefix)
        every = task.checkpoint_every_steps
        if every and pos.global_step % every == 0 and pos.step_in_epoch < r.iters_per_epoch:
            self.save_checkpoint()

    def end_epoch(self) -> None:
        pos = self.position
        self.totals.sync()
        loss = self.totals.close_epoch()
        pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
        record = {"step": pos.global_step, "epoch": pos.epoch, "epoch_loss": loss}
        self.metrics.log({**record, "corrupt_reads": self.totals.values["corrupt_reads"]}, prefix=self.prefix)
        self.progress.end_epoch(loss)
        self.task.end_of_epoch(self)
        every = self.task.checkpoint_every
        self.save_checkpoint([ckpt_io.epoch_checkpoint_name(pos.epoch)] if every and pos.epoch % every == 0 else [])

    def epoch_fraction(self) -> float:
        """The position in epochs (4 decimals), e.g. for an evaluation record."""
        pos = self.position
        return round(pos.epoch + pos.step_in_epoch / self.recipe.iters_per_epoch, 4)

    # -- checkpoints and failures ------------------------------------------------------------------------
    def save_checkpoint(self, extra_names: list[str] | tuple[str, ...] = ()) -> None:
        """Write ``checkpoint-last.pth`` (and ``extra_names``) from rank 0 with every rank's RNG states."""
        self.totals.sync()
        pos, task = self.position, self.task
        rng = gather_to_main(capture_rng_state(task.generator))
        if self.env.is_main:
            sampler = {"seed": self.seed, "epoch": pos.epoch, "start": pos.step_in_epoch * self.recipe.batch_size}
            counters = {**self.totals.state_dict(), **task.counters()}
            state = ckpt_io.training_checkpoint(task.trainable, self.optimizer, self.scaler, pos, rng, sampler,
                                                counters, task.config)  # fmt: skip
            for name in (*extra_names, LAST):  # "last" last: once it holds a position, so do the others
                ckpt_io.atomic_torch_save(state, self.dir / name)
        barrier()
        self.last_checkpoint_step = pos.global_step

    def on_nonfinite(self, value: float) -> None:
        """Drop this step's gradients, record the event, then stop or roll back (both raise)."""
        self.optimizer.zero_grad(set_to_none=True)
        pos = self.position
        self.totals.values["nonfinite_events"] += 1
        event = {"event": "nonfinite_loss", "step": pos.global_step + 1, "epoch": pos.epoch, "loss": value}
        self.metrics.event({**event, "action": self.guard.mode, "restored_step": self.last_checkpoint_step})
        where = f"epoch {pos.epoch}, iteration {pos.step_in_epoch}"
        self.guard.handle(value, pos.global_step + 1, where, self.dir / LAST, self.last_checkpoint_step)

    def rollback(self) -> None:
        """Reload ``checkpoint-last.pth`` and continue on a reseeded random path (keeping the event count)."""
        events = self.totals.values["nonfinite_events"]
        self.load(ckpt_io.load_checkpoint(self.dir / LAST))
        self.totals.values["nonfinite_events"] = events
        self.pending_rng = None  # replaying the same batch and mask would hit the same value
        self.task.reseed(self.seed + self.env.rank + 1_000_003 * int(events))
        self.metrics.rewind(self.position.global_step)
