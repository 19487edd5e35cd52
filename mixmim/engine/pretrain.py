"""The pre-training loop, one for every method with ``forward(images, mask=None) -> {"loss": ...}``.

Recipe (official-mixmim.md): AdamW over :func:`~mixmim.engine.optim.pretrain_param_groups`, lr =
``blr * effective_batch / lr_scale_base`` (the method's ``lr_scale_base`` when it has one) unless
``pretrain.lr`` is set, linear warmup then per-step half-cosine (:func:`~mixmim.engine.schedule.lr_at_step`
over the full ``epochs``; ``max_steps`` only stops early, so a debug run follows the first steps of the
real schedule), AMP (``precision``), gradient accumulation, optional clipping, DDP.

Resume guarantee: ``checkpoint-last.pth`` is written atomically at the start, every
``checkpoint_every_steps`` optimizer steps, at every epoch end and at the end, holding the model,
optimizer, scaler, position, every rank's RNG states and the data position. A killed run restarts from
it; with ``num_workers=0`` on CPU the resumed run is bitwise identical to an uninterrupted one (the data
order is a function of ``(seed, epoch)``, the loader never draws from the global generator, and the RNG
states are restored just before the next batch is drawn). With workers, the data order is still exact but
the augmentation of a resumed epoch differs (workers are reseeded).

Non-finite loss: the update is not applied (gradients dropped); ``nonfinite=stop`` raises
:class:`NonFiniteLossError` naming the step and the last good checkpoint, ``nonfinite=rollback`` reloads
``checkpoint-last.pth``, reseeds (so the same batch and mask are not replayed) and continues; events are
recorded in ``metrics.jsonl`` and the result (``nonfinite_events``).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mixmim.config import RunConfig, to_dict
from mixmim.data import ResumableSampler, build_loader, dataset_fingerprint, unpack_batch
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.checkpoint import LAST, TrainPosition
from mixmim.engine.distributed import DistEnv, barrier, default_device, gather_to_main, init_distributed
from mixmim.engine.manifest import record_manifest
from mixmim.engine.metrics import MetricsLogger
from mixmim.engine.nonfinite import NonFiniteGuard, NonFiniteLossError, RollbackRequested, any_rank_nonfinite
from mixmim.engine.optim import build_adamw, pretrain_param_groups, set_lr
from mixmim.engine.precision import autocast, grad_scaler
from mixmim.engine.progress import StageProgress
from mixmim.engine.recipe import Recipe, make_recipe
from mixmim.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from mixmim.engine.schedule import lr_at_step
from mixmim.engine.totals import RunningTotals
from mixmim.rundir import is_done, read_result, stage_dir, write_result

__all__ = ["STAGE", "NonFiniteLossError", "pretrain", "pretrain_recipe"]

logger = logging.getLogger(__name__)

STAGE = "pretrain"


def pretrain(
    method: nn.Module,
    train_dataset: Dataset,
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    device: torch.device | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Pre-train ``method`` on ``train_dataset`` as ``cfg.pretrain`` says: the ``pretrain`` stage.

    Skips (returns the stored result) when ``<run_dir>/pretrain/result.json`` exists; resumes from
    ``checkpoint-last.pth`` when present. Writes ``metrics.jsonl``, ``tb/``, checkpoints, ``encoder.pth``
    (the ``encoder.`` weights, prefix stripped), ``result.json`` and the ``pretrain`` manifest entry.

    Args:
        method: ``forward(images [B,3,H,W], mask=None) -> dict`` with a scalar ``loss``; optional
            ``generator`` / ``reseed(seed)``, ``lr_scale_base``, ``no_weight_decay()``.
        train_dataset: samples ``(image, label, corrupt)`` (or ``(image, label)``).
        log_every: optimizer steps between metric records.

    Returns:
        The result as written to ``result.json``: ``stage``, ``status``, ``metrics`` and the recipe used
        (on rank 0; other ranks get ``{"stage": "pretrain"}``).
    """
    if is_done(run_dir, STAGE):
        logger.info("stage %s is done in %s; skipping", STAGE, run_dir)
        return read_result(run_dir, STAGE) or {}
    env = init_distributed()
    run = _PretrainRun(method, train_dataset, cfg, Path(run_dir), env, device or default_device(env), log_every)
    return run.run()


def pretrain_recipe(cfg: RunConfig, method: nn.Module, world_size: int, device: torch.device, n: int) -> Recipe:
    """The recipe of ``cfg.pretrain`` over ``n`` images; a method's ``lr_scale_base`` (SimMIM: 512) wins."""
    base = int(getattr(method, "lr_scale_base", cfg.pretrain.lr_scale_base))
    if base != cfg.pretrain.lr_scale_base:
        logger.warning("%s scales the lr by batch/%d (config: %d)", type(method).__name__, base,
                       cfg.pretrain.lr_scale_base)  # fmt: skip
    return make_recipe(cfg.pretrain, world_size, device, n, lr_scale_base=base)


class _PretrainRun:
    """One pre-training stage in progress; :meth:`run` does the work."""

    def __init__(self, method, dataset, cfg: RunConfig, run_dir: Path, env: DistEnv, device, log_every: int):
        self.guard = NonFiniteGuard(cfg.pretrain.nonfinite)
        self.cfg, self.run_dir, self.env, self.device, self.log_every = cfg, run_dir, env, device, log_every
        self.dir = stage_dir(run_dir, STAGE)
        self.method = method.to(device).train()
        self.dataset = dataset
        self.recipe = pretrain_recipe(cfg, method, env.world_size, device, len(dataset))
        self.model = self.method
        if env.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.method,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(method, "find_unused_parameters", False)),
            )
        groups = pretrain_param_groups(self.method, cfg.pretrain.weight_decay, cfg.pretrain.official_quirks)
        self.optimizer = build_adamw(groups, betas=tuple(cfg.pretrain.betas))
        self.scaler = grad_scaler(self.recipe.precision, device)
        self.sampler = ResumableSampler(dataset, env.world_size, env.rank, shuffle=True, seed=cfg.seed)
        self.metrics = MetricsLogger(self.dir, enabled=env.is_main)
        self.totals = RunningTotals(device)
        self.position = TrainPosition()
        self.pending_rng: dict[str, Any] | None = None  # restored right before the next batch is drawn
        self.last_checkpoint_step = 0
        self.fingerprint = dataset_fingerprint(dataset) if env.is_main else None
        self.progress = StageProgress(run_dir.name, STAGE, self.recipe.epochs, self.recipe.iters_per_epoch, env.is_main)

    @property
    def generator(self) -> torch.Generator | None:
        return getattr(self.method, "generator", None)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.env.is_main:
            ckpt_io.remove_partial_checkpoints(self.dir)  # left by a run killed while writing
        latest = ckpt_io.load_latest_checkpoint(self.dir)  # the newest readable one, or None
        if latest is not None:
            self.resume(*latest)
        else:
            self.fresh_start()
        if self.env.is_main:
            record_manifest(self.run_dir, self.cfg, self.env.world_size, STAGE, self.stage_fields())
        while not self.finished():
            try:
                self.train_epoch()
            except RollbackRequested as request:
                logger.warning("%s", request)
                self.rollback()
        return self.finish()

    def finished(self) -> bool:
        max_steps, pos = self.recipe.max_steps, self.position
        return pos.epoch >= self.recipe.epochs or bool(max_steps and pos.global_step >= max_steps)

    def reseed(self, seed: int) -> None:
        seed_everything(seed)
        if callable(getattr(self.method, "reseed", None)):
            self.method.reseed(seed)
        elif self.generator is not None:
            self.generator.manual_seed(seed)

    def fresh_start(self) -> None:
        self.reseed(self.cfg.seed + self.env.rank)
        self.metrics.rewind(0)
        self.save_checkpoint()  # step 0: the "last good checkpoint" before any update
        logger.info("pre-training from scratch: %s", self.recipe)

    def resume(self, ckpt: dict[str, Any], path: Path) -> None:
        self.load(ckpt)
        self.metrics.rewind(self.position.global_step)
        logger.info("resumed from %s at %s", path, self.position)

    def load(self, ckpt: dict[str, Any]) -> None:
        """Restore model, optimizer, scaler, position and totals now, the RNG states before the next batch."""
        self.position = ckpt_io.restore_training_checkpoint(ckpt, self.method, self.optimizer, self.scaler)
        self.totals.load_state_dict(ckpt["counters"])
        self.last_checkpoint_step = self.position.global_step
        now = to_dict(self.cfg.pretrain)
        changed = {k: (now[k], v) for k, v in ckpt["config"].items() if k in now and now[k] != v}
        if changed:
            logger.warning("resuming with a changed config {key: (now, then)}: %s", changed)
        if len(ckpt["rng"]) == self.env.world_size:
            self.pending_rng = ckpt["rng"][self.env.rank]
        else:
            logger.warning("checkpoint holds RNG states of %d ranks, running %d: reseeding (not bit-exact)",
                           len(ckpt["rng"]), self.env.world_size)  # fmt: skip
            self.reseed(self.cfg.seed + self.env.rank + 7919 * self.position.global_step)

    # -- training ----------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        r, pos = self.recipe, self.position
        self.sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * r.batch_size)
        loader_seed = (self.cfg.seed * 1_000_003 + pos.epoch) * 4099 + self.env.rank
        loader = build_loader(self.dataset, r.batch_size, self.sampler, self.cfg.data.num_workers, seed=loader_seed)
        if self.pending_rng is not None:  # exactly where the interrupted run drew its next batch
            restore_rng_state(self.pending_rng, self.generator)
            self.pending_rng = None
        self.progress.start_epoch(pos.epoch, pos.step_in_epoch)
        batches = iter(loader)
        while pos.step_in_epoch < r.iters_per_epoch and not self.finished():
            images, _, corrupt = unpack_batch(next(batches))
            loss = self.micro_step(images.to(self.device, non_blocking=True))
            self.totals.add_batch(loss, corrupt)
            pos.step_in_epoch += 1
            self.progress.step(loss)
            if pos.step_in_epoch % r.accum_iter == 0:
                self.optimizer_step()
        if pos.step_in_epoch >= r.iters_per_epoch:
            self.end_epoch()

    def micro_step(self, images: torch.Tensor) -> float:
        """Forward and backward of one micro-batch ``[B,3,H,W]``; return its loss (a float)."""
        last_of_group = (self.position.step_in_epoch + 1) % self.recipe.accum_iter == 0
        sync = contextlib.nullcontext() if last_of_group or not self.env.distributed else self.model.no_sync()
        with sync:
            with autocast(self.recipe.precision, self.device):
                loss = self.model(images)["loss"]
            value = float(loss.detach().float().item())
            if any_rank_nonfinite(value, self.device):
                self.on_nonfinite(value)
            self.scaler.scale(loss / self.recipe.accum_iter).backward()
        return value

    def optimizer_step(self) -> None:
        r, pos = self.recipe, self.position
        lr = lr_at_step(pos.global_step, r.total_steps, r.warmup_steps, r.lr, r.min_lr)
        set_lr(self.optimizer, lr)
        if self.cfg.pretrain.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.method.parameters(), self.cfg.pretrain.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        pos.global_step += 1
        self.totals.values["images"] += r.effective_batch
        if pos.global_step % self.log_every == 0:
            self.totals.sync()
            epoch = round(pos.epoch + pos.step_in_epoch / r.iters_per_epoch, 4)
            record = {"step": pos.global_step, "epoch": epoch, "loss": self.totals.take_window_loss(), "lr": lr}
            self.metrics.log({**record, "images_per_s": self.totals.images_per_s()}, prefix="pretrain/")
        every = self.cfg.pretrain.checkpoint_every_steps
        if every and pos.global_step % every == 0 and pos.step_in_epoch < r.iters_per_epoch:
            self.save_checkpoint()

    def end_epoch(self) -> None:
        pos = self.position
        self.totals.sync()
        loss = self.totals.close_epoch()
        pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
        record = {"step": pos.global_step, "epoch": pos.epoch, "epoch_loss": loss}
        self.metrics.log({**record, "corrupt_reads": self.totals.values["corrupt_reads"]}, prefix="pretrain/")
        self.progress.end_epoch(loss)
        every = self.cfg.pretrain.checkpoint_every
        self.save_checkpoint([ckpt_io.epoch_checkpoint_name(pos.epoch)] if every and pos.epoch % every == 0 else [])

    # -- checkpoints and failures ------------------------------------------------------------------------
    def save_checkpoint(self, extra_names: list[str] | tuple[str, ...] = ()) -> None:
        """Write ``checkpoint-last.pth`` (and ``extra_names``) from rank 0 with every rank's RNG states."""
        self.totals.sync()
        pos = self.position
        rng = gather_to_main(capture_rng_state(self.generator))
        if self.env.is_main:
            sampler = {
                "seed": self.cfg.seed,
                "epoch": pos.epoch,
                "start": pos.step_in_epoch * self.recipe.batch_size,
            }
            state = ckpt_io.training_checkpoint(self.method, self.optimizer, self.scaler, pos, rng, sampler,
                                                self.totals.state_dict(), to_dict(self.cfg.pretrain))  # fmt: skip
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
        self.reseed(self.cfg.seed + self.env.rank + 1_000_003 * int(events))
        self.metrics.rewind(self.position.global_step)

    # -- results -----------------------------------------------------------------------------------------
    def stage_fields(self) -> dict[str, Any]:
        """The ``stages.pretrain`` manifest entry."""
        r, wall = self.recipe, self.totals.values["wall_time_s"]
        return {
            "effective_batch": r.effective_batch,
            "lr": r.lr,
            "blr": r.blr,
            "lr_scale_base": r.lr_scale_base,
            "precision": r.precision,
            "world_size": r.world_size,
            "epochs": r.epochs,
            "max_steps": r.max_steps,
            "seed": self.cfg.seed,
            "data_root": str(getattr(self.dataset, "data_root", getattr(self.dataset, "root", ""))),
            "data_fingerprint": self.fingerprint,
            "wall_time_s": wall,
            "gpu_hours": wall * r.world_size / 3600 if self.device.type == "cuda" else 0.0,
        }

    def finish(self) -> dict[str, Any]:
        """Final checkpoint, ``encoder.pth``, ``result.json`` and the manifest entry."""
        self.totals.sync()
        loss = self.totals.final_loss()
        self.save_checkpoint()
        result: dict[str, Any] = {}
        if self.env.is_main:
            meta = {"backbone": self.cfg.model.backbone, "step": self.position.global_step}
            ckpt_io.save_encoder(self.method, self.dir / ckpt_io.ENCODER, meta=meta)
            fields, v, steps = self.stage_fields(), self.totals.values, self.position.global_step
            recipe = {
                **fields,
                "steps": steps,
                "epochs": steps / self.recipe.steps_per_epoch,
                "epochs_planned": self.recipe.epochs,
                "images_per_s": self.totals.images_per_s(),
            }
            counts = {k: int(v[k]) for k in ("nonfinite_events", "corrupt_images", "corrupt_reads")}
            result = {
                "status": "done",
                "metrics": {"loss": loss, **recipe, **counts},
                **recipe,
                "encoder": "encoder.pth",
            }
            record_manifest(self.run_dir, self.cfg, self.recipe.world_size, STAGE, fields)
            write_result(self.run_dir, STAGE, result)
        self.metrics.close()
        barrier()
        return {"stage": STAGE, **result}
