"""The one training loop: a :class:`Trainer` runs a :class:`TrainTask` (pre-training, fine-tuning, linear probe,
the built-in COCO detector).

The trainer owns what every stage shares: the data position and the resumable sampler, gradient
accumulation, AMP (autocast + a GradScaler for fp16), DDP, the per-step lr schedule the recipe names
(:class:`~mixmim.engine.schedule.LrSchedule`, each group's ``lr_scale`` applied by
:func:`~mixmim.engine.optim.set_scheduled_lr`), clipping, the non-finite guard (stop or roll back), running totals,
metrics (``metrics.jsonl`` + TensorBoard + the progress bar) and one checkpoint schema (the trainable
module, optimizer, scaler, position, sampler position, totals, the task's counters, every rank's RNG
states), written atomically: ``checkpoint-last.pth`` at the start, every ``checkpoint_every_steps``
optimizer steps, at every epoch end (after the task's evaluation) and at the end; ``checkpoint-<epoch>.pth``
every ``checkpoint_every`` epochs, always written before ``last`` (once ``last`` holds a position, so do the
others).

A task supplies what differs: how a batch becomes a loss (:meth:`TrainTask.prepare` outside autocast, then
:meth:`TrainTask.loss` inside it), the module the forward runs and the trainable part the optimizer and the
checkpoints hold, the optimizer over its parameter groups, the recipe, an optional end-of-epoch evaluation
and its RNG policy (:attr:`TrainTask.generator`, :meth:`TrainTask.reseed`); optionally its own batches
(:meth:`TrainTask.batches`, e.g. a detector's lists of images and targets) and its own lr schedule
(:meth:`TrainTask.learning_rate`).

No host synchronisation in the hot loop: a micro-batch's loss stays on the device (the running totals keep it
until they are read); a non-finite loss sets a device flag (:class:`~mixmim.engine.nonfinite.NonFiniteFlag`, MAX
all-reduced over ranks once per optimizer step) that makes every optimizer step a no-op from that group on
(:func:`~mixmim.engine.optim.step_unless`; fp16: the GradScaler's own skip). The host reads values only at
logging steps (the guard's flag, then the totals), at epoch ends, before every checkpoint and at the end; there
the guard acts on the first non-finite loss (stop, or roll back to ``checkpoint-last.pth``) before anything of
a bad step is logged or saved. The steps skipped between the bad one and that read advance the position (and so
the lr schedule) as usual, and are undone with everything else: stop ends the stage, rollback reloads the last
checkpoint, which never holds a bad step.

Resume guarantee: a killed stage restarts from its newest readable checkpoint with the RNG states of that
moment, restored just before the next batch is drawn, so on the CPU (``num_workers=0``) a resumed stage ends
bitwise equal to an uninterrupted one (the data order is a function of ``(seed, epoch)`` and the loader
never draws from the global generator).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn
from torch.utils.data import Dataset

from mixmim.data import ResumableSampler, build_loader, unpack_batch
from mixmim.data.gpu_decode import EncodedBatch
from mixmim.data.sampler import stream_seed
from mixmim.device_copy import to_device
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.checkpoint import LAST, TrainPosition
from mixmim.engine.compile import compile_module
from mixmim.engine.distributed import DistEnv, all_gather_objects, barrier, gather_to_main, wrap_ddp
from mixmim.engine.metrics import MetricsLogger
from mixmim.engine.nonfinite import NonFiniteFlag, NonFiniteGuard, RollbackRequested
from mixmim.engine.optim import grad_norm, set_lr, set_scheduled_lr, step_unless
from mixmim.engine.precision import autocast, grad_scaler
from mixmim.engine.progress import StageProgress
from mixmim.engine.recipe import Recipe
from mixmim.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from mixmim.engine.step_observer import current_observer
from mixmim.engine.totals import KEYS as TOTAL_KEYS
from mixmim.engine.totals import RunningTotals

__all__ = ["Images", "Targets", "TrainTask", "Trainer", "to_device"]

logger = logging.getLogger(__name__)

# a batch [B,3,H,W], a detector's [3,H_i,W_i] per image, or JPEG bytes the step decodes (data.decode=gpu)
Images: TypeAlias = torch.Tensor | list[torch.Tensor] | EncodedBatch
Targets: TypeAlias = torch.Tensor | list[dict[str, torch.Tensor]]  # labels [B], or a detector's target per image


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
        collate_fn: how the trainer's loader batches :attr:`train_set` (None: torch's default); the GPU decode
            path's batches ``(EncodedBatch, labels, corrupt)`` are decoded on the device in the step.
        config: the stage's config as a plain dict (saved in checkpoints; a changed config is reported).
        clip_grad: clip the gradient norm to this before each update (0: no clipping).
        nonfinite: ``stop`` | ``rollback`` (:class:`~mixmim.engine.nonfinite.NonFiniteGuard`).
        checkpoint_every: keep ``checkpoint-<epoch>.pth`` every this many epochs (0: only ``last``).
        checkpoint_every_steps: also write ``last`` every this many optimizer steps (0: never).
        compile: ``off`` | a ``torch.compile`` backend of :data:`~mixmim.engine.compile.COMPILE_MODES`: the
            trainer compiles the module the forward runs (the checkpoints still hold :attr:`trainable`).
    """

    stage: str
    module: nn.Module
    trainable: nn.Module
    optimizer: torch.optim.Optimizer
    recipe: Recipe
    train_set: Dataset
    collate_fn: Callable[[list[Any]], Any] | None = None
    config: dict[str, Any]
    clip_grad: float = 0.0
    nonfinite: str = "stop"
    checkpoint_every: int = 0
    checkpoint_every_steps: int = 0
    compile: str = "off"

    # -- the RNG policy ----------------------------------------------------------------------------------
    @property
    def generator(self) -> torch.Generator | None:
        """A private generator saved and restored with the global ones (a method's mask generator), or None."""
        return None

    def reseed(self, seed: int) -> None:
        """Seed every random stream the task draws from."""
        seed_everything(seed)

    # -- the data and the schedule ----------------------------------------------------------------------
    def batches(self, epoch: int, start: int) -> Iterator[tuple[Images, Targets]] | None:
        """The micro-batches of ``epoch`` from its ``start``-th on, as ``(images, targets[, corrupt])``, or None:
        the trainer's loader over :attr:`train_set` (resumable sampler, ``(images, labels)`` tensors)."""
        return None

    def learning_rate(self, step: int) -> float | None:
        """The peak lr of optimizer step ``step`` (0-based; each group's ``lr_scale`` applies), or None: the
        trainer's schedule of the recipe (:meth:`~mixmim.engine.recipe.Recipe.lr_schedule`)."""
        return None

    # -- a batch to a loss -------------------------------------------------------------------------------
    def prepare(self, images: Images, labels: Targets) -> tuple[Any, Any]:
        """Inputs and targets of one micro-batch on the device (outside autocast: e.g. Mixup)."""
        return images, labels

    def loss(self, model: nn.Module, inputs: Any, targets: Any) -> torch.Tensor:
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

    def finish(self, trainer: Trainer) -> Any:
        """After the final checkpoint: what the stage computed (metrics and the recipe actually run), which
        :func:`mixmim.engine.stage.run_stage` writes; a task writes no result itself."""
        return {}


class Trainer:
    """Runs a :class:`TrainTask` to the end of its recipe, resuming from its stage folder; :meth:`run`."""

    def __init__(self, task: TrainTask, seed: int, stage_dir: Path, run_name: str, env: DistEnv,
                 device: torch.device, num_workers: int = 0, log_every: int = 10):  # fmt: skip
        self.task, self.seed, self.dir, self.env, self.device = task, seed, Path(stage_dir), env, device
        self.num_workers, self.log_every = num_workers, log_every
        self.recipe = task.recipe
        self.schedule = task.recipe.lr_schedule()
        self._model = self.wrap_module(task, env, device)
        self.optimizer = task.optimizer
        self.scaler = grad_scaler(self.recipe.precision, device)
        self.sampler = ResumableSampler(task.train_set, env.world_size, env.rank, shuffle=True, seed=seed,
                                        batch_size=self.recipe.batch_size)  # fmt: skip
        self.metrics = MetricsLogger(self.dir, enabled=env.is_main)
        self.totals = RunningTotals(device)
        self.position = TrainPosition()
        self.guard = NonFiniteGuard(task.nonfinite)
        self.nonfinite_flag = NonFiniteFlag(device)
        self.group_norms: list[tuple[torch.Tensor, tuple[int, int, int]]] = []  # (gradient norm [], position)
        # (loss [] on the device, (step, epoch, iteration)) of every micro-batch since the guard's last read; the
        # first `closed` of them are in groups the flag holds (the rest: the open accumulation group)
        self.unchecked: list[tuple[torch.Tensor, tuple[int, int, int]]] = []
        self.closed = 0
        self.poison: torch.Tensor | None = None  # fp16: NaN once the flag is set, so that the scaler skips too
        self.pending_rng: dict[str, Any] | None = None  # restored right before the next batch is drawn
        self.last_checkpoint_step = 0
        self.prefix = f"{task.stage}/"
        self.progress = StageProgress(run_name, task.stage, self.recipe.epochs, self.recipe.iters_per_epoch,
                                      env.is_main)  # fmt: skip
        self.observer = current_observer()  # the preflight's (mixmim.engine.step_observer), else None

    @staticmethod
    def wrap_module(task: TrainTask, env: DistEnv, device: torch.device) -> nn.Module:
        """The module the forward runs: ``task.module``, wrapped in DDP when distributed (:func:`wrap_ddp`: fixed
        gradient buckets), then compiled as ``task.compile`` says (the wrappers are never saved: the checkpoints
        hold ``task.trainable``)."""
        model: nn.Module = task.module
        if env.distributed:
            model = wrap_ddp(task.module, device)
        return compile_module(model, task.compile)

    @property
    def model(self) -> nn.Module:
        """The module the forward runs (:meth:`wrap_module`), fixed when the trainer is built: read-only, so a
        compiled or wrapped forward comes from the task's settings (``TrainTask.compile``), never from outside."""
        return self._model

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
        if self.observer is not None:
            self.observer.started(self.task)
        while not self.finished():
            try:
                self.train_epoch()
                self.check_nonfinite()  # the last steps of a run that max_steps stops inside an epoch
            except RollbackRequested as request:
                logger.warning("%s", request)
                self.rollback()
        if self.position.global_step < self.log_every:  # a stage shorter than one window: its one loss record
            self.log_window()
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
        self.task.reseed(stream_seed(self.seed, self.env.rank))
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
        self.nonfinite_flag.reset()  # a checkpoint never holds a bad step
        self.unchecked, self.closed, self.poison, self.group_norms = [], 0, None, []
        changed = {k: (task.config[k], v) for k, v in ckpt["config"].items()
                   if k in task.config and task.config[k] != v}  # fmt: skip
        if changed:
            logger.warning("resuming %s with a changed config {key: (now, then)}: %s", task.stage, changed)
        if len(ckpt["rng"]) == self.env.world_size:
            self.pending_rng = ckpt["rng"][self.env.rank]
        else:
            logger.warning("checkpoint holds RNG states of %d ranks, running %d: reseeding (not bit-exact)",
                           len(ckpt["rng"]), self.env.world_size)  # fmt: skip
            task.reseed(stream_seed(self.seed, self.env.rank + 7919 * self.position.global_step))

    # -- training ----------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        r, pos = self.recipe, self.position
        batches = self.task.batches(pos.epoch, pos.step_in_epoch)
        if batches is None:
            self.sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * r.batch_size)
            loader_seed = (self.seed * 1_000_003 + pos.epoch) * 4099 + self.env.rank
            loader = build_loader(self.task.train_set, r.batch_size, self.sampler, self.num_workers, seed=loader_seed,
                                  collate_fn=self.task.collate_fn)  # fmt: skip
            batches = (unpack_batch(batch) for batch in loader)
        if self.pending_rng is not None:  # exactly where the interrupted run drew its next batch
            restore_rng_state(self.pending_rng, self.task.generator)
            self.pending_rng = None
        self.task.module.train()
        self.progress.start_epoch(pos.epoch, pos.step_in_epoch)
        while pos.step_in_epoch < r.iters_per_epoch and not self.finished():
            self.train_batch(*next(batches))
        if pos.step_in_epoch >= r.iters_per_epoch:
            self.end_epoch()

    def train_batch(self, images: Images, labels: Targets, corrupt: int = 0) -> torch.Tensor:
        """One micro-batch (images [B,3,H,W] and labels [B], or a detector's lists, on any device, or an
        :class:`~mixmim.data.gpu_decode.EncodedBatch` decoded here on the device; corrupt: unreadable images in
        it): forward, backward and, at the end of an accumulation group, the optimizer step; the position, totals
        and progress advance (the body of the training loop, also what ``bench`` times). Returns the
        micro-batch's loss (a detached scalar on the device, not read)."""
        pos = self.position
        with self.observer.step(self.device) if self.observer is not None else contextlib.nullcontext():
            images = images.decode(self.device) if isinstance(images, EncodedBatch) else images  # data.decode=gpu
            loss = self.micro_step(to_device(images, self.device), to_device(labels, self.device))
            self.totals.add_batch(loss, corrupt)
            pos.step_in_epoch += 1
            self.progress.step()
            if pos.step_in_epoch % self.recipe.accum_iter == 0:
                self.optimizer_step()
        return loss

    def micro_step(self, images: Images, labels: Targets) -> torch.Tensor:
        """Forward and backward of one micro-batch (images and labels on the device); return its loss (a
        detached scalar on the device: nothing here waits for the device)."""
        r, pos = self.recipe, self.position
        last_of_group = (pos.step_in_epoch + 1) % r.accum_iter == 0
        sync = contextlib.nullcontext() if last_of_group or not self.env.distributed else self._model.no_sync()
        inputs, targets = self.task.prepare(images, labels)
        with sync:
            with autocast(r.precision, self.device):
                loss = self.task.loss(self._model, inputs, targets)
            self.unchecked.append((loss.detach(), (pos.global_step + 1, pos.epoch, pos.step_in_epoch)))
            backward_loss = loss if self.poison is None else loss * self.poison
            self.scaler.scale(backward_loss / r.accum_iter).backward()
        return loss.detach()

    def optimizer_step(self) -> None:
        r, pos, task = self.recipe, self.position, self.task
        lr = self.task.learning_rate(pos.global_step)
        if lr is None:  # the recipe's schedule, per group (a warm-up start or floor may ignore lr_scale)
            set_scheduled_lr(self.optimizer, self.schedule, pos.global_step)
        else:
            set_lr(self.optimizer, lr)
        norm = None
        if task.clip_grad > 0:  # a NaN norm makes NaN gradients only in a group that is skipped and dropped
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(task.trainable.parameters(), task.clip_grad)
        elif not self.scaler.is_enabled():
            norm = grad_norm(task.trainable.parameters())
        if self.scaler.is_enabled():  # fp16: inf gradients are the scaler's to skip, not a failure
            norm = None
        else:  # a finite loss with NaN/inf gradients is caught too, on the device
            self.group_norms.append((norm.detach(), self.unchecked[-1][1]))
        found = self.nonfinite_flag.close_group([loss for loss, _ in self.unchecked[self.closed :]], norm)
        self.closed = len(self.unchecked)
        if self.scaler.is_enabled():  # fp16: the scaler skips NaN/inf gradients itself
            self.scaler.step(self.optimizer)
            self.poison = torch.where(found.bool(), math.nan, 1.0)  # the later groups' gradients: NaN, skipped too
        else:
            step_unless(self.optimizer, found)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)  # a skipped group's gradients are dropped
        pos.global_step += 1
        self.totals.values["images"] += r.effective_batch
        if pos.global_step % self.log_every == 0:
            self.log_window()
        every = task.checkpoint_every_steps
        if every and pos.global_step % every == 0 and pos.step_in_epoch < r.iters_per_epoch:
            self.save_checkpoint()

    def log_window(self) -> None:
        """The logging record: the mean loss of the micro-batches since the previous record, the lr of the last
        optimizer step and the throughput, to ``metrics.jsonl``, TensorBoard and the progress bar. The guard reads
        first, so a bad step is never logged; nothing is logged when no micro-batch ran since the previous record.
        Every ``log_every`` optimizer steps, and at the end of a stage of fewer steps (so that it has a loss
        curve); a task may add one at its end (:meth:`TrainTask.before_finish`)."""
        self.check_nonfinite()
        self.totals.sync()
        if not self.totals.values["window_count"]:
            return
        pos = self.position
        record = {"step": pos.global_step, "epoch": self.epoch_fraction(), "loss": self.totals.take_window_loss(),
                  "lr": self.learning_rate(pos.global_step - 1)}  # fmt: skip
        self.metrics.log({**record, "images_per_s": self.totals.images_per_s()}, prefix=self.prefix)
        self.progress.show_loss(record["loss"])

    def learning_rate(self, step: int) -> float:
        """The peak lr (``lr_scale`` 1) of optimizer step ``step``: the task's schedule, or the recipe's."""
        lr = self.task.learning_rate(step)
        return lr if lr is not None else self.schedule.lr(step)

    def end_epoch(self) -> None:
        pos = self.position
        self.check_nonfinite()
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
        """Write ``checkpoint-last.pth`` (and ``extra_names``) from rank 0 with every rank's RNG states (after the
        guard has looked at the steps it would hold)."""
        self.check_nonfinite()
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

    def check_nonfinite(self) -> None:
        """The guard's host read (logging steps, epoch ends, before every checkpoint, the end of a run): when a
        loss since the last read was NaN/inf on any rank, act on the first one (:meth:`on_nonfinite` raises).

        One read of the device flag; on the failure path, every rank's first bad micro-batch is gathered too.
        """
        if not self.closed:
            return
        unchecked, self.unchecked, self.closed = self.unchecked[: self.closed], self.unchecked[self.closed :], 0
        norms, self.group_norms = self.group_norms, []
        if not self.nonfinite_flag.read():
            return
        bad = _first_nonfinite(unchecked)  # a loss first; else a gradient norm of a finite loss
        what = "loss" if bad is not None else "gradient norm"
        index, value = bad if bad is not None else _first_nonfinite(norms)
        self.on_nonfinite(value, *(unchecked if what == "loss" else norms)[index][1], what=what)

    def on_nonfinite(self, value: float, step: int, epoch: int, iteration: int, what: str = "loss") -> None:
        """Drop the gradients, record the event of the ``what`` (loss, gradient norm) ``value`` at optimizer
        ``step`` (1-based) of micro-batch ``iteration`` of ``epoch``, then stop or roll back (both raise)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_flag.reset()
        self.poison = None
        self.totals.values["nonfinite_events"] += 1
        if what == "loss":
            event = {"event": "nonfinite_loss", "step": step, "epoch": epoch, "loss": value}
        else:
            event = {"event": "nonfinite_gradient", "step": step, "epoch": epoch, "grad_norm": value}
        self.metrics.event({**event, "action": self.guard.mode, "restored_step": self.last_checkpoint_step})
        where = f"epoch {epoch}, iteration {iteration}"
        self.guard.handle(value, step, where, self.dir / LAST, self.last_checkpoint_step, what)

    def rollback(self) -> None:
        """Reload ``checkpoint-last.pth`` and continue on a reseeded random path (keeping the event count)."""
        events = self.totals.values["nonfinite_events"]
        self.load(ckpt_io.load_checkpoint(self.dir / LAST))
        self.totals.values["nonfinite_events"] = events
        self.pending_rng = None  # replaying the same batch and mask would hit the same value
        self.task.reseed(stream_seed(self.seed, self.env.rank + 1_000_003 * int(events)))
        self.metrics.rewind(self.position.global_step)


def _first_nonfinite(items: list[tuple[torch.Tensor, tuple[int, int, int]]]) -> tuple[int, float] | None:
    """``(index, value)`` of the first non-finite device scalar of ``items`` over every rank (the lowest index of
    any rank's first); None when all are finite everywhere. A host read and an object gather (failure path)."""
    values = torch.stack([value.float() for value, _ in items]).tolist() if items else []
    mine = next(((i, v) for i, v in enumerate(values) if not math.isfinite(v)), None)
    found = [m for m in all_gather_objects(mine) if m is not None]
    return min(found, key=lambda m: m[0]) if found else None
