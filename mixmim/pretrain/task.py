"""The pre-training loop, one for every method with ``forward(images, mask=None) -> {"loss": ...}``.

Recipe (official-mixmim.md): AdamW over :func:`~mixmim.engine.optim.pretrain_param_groups`, lr =
``blr * effective_batch / lr_scale_base`` (the method's ``lr_scale_base`` when it has one) unless
``pretrain.lr`` is set, linear warmup then per-step half-cosine (:func:`~mixmim.engine.schedule.lr_at_step`
over the full ``epochs``; ``max_steps`` only stops early, so a debug run follows the first steps of the
real schedule), AMP (``precision``), gradient accumulation, optional clipping, DDP. The loop is the shared
:class:`~mixmim.engine.trainer.Trainer`; :class:`PretrainTask` is what pre-training gives it.

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

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mixmim.config import RunConfig, to_dict
from mixmim.data import dataset_counts, dataset_fingerprint
from mixmim.data.gpu_decode import loader_collate
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.distributed import DistEnv
from mixmim.engine.nonfinite import NonFiniteLossError
from mixmim.engine.optim import build_adamw, pretrain_param_groups
from mixmim.engine.recipe import Recipe, make_recipe
from mixmim.engine.rng import seed_everything
from mixmim.engine.stage import StageContext, StageResult, recipe_fields, run_stage, stage_fields
from mixmim.engine.totals import RunningTotals
from mixmim.engine.trainer import Trainer, TrainTask
from mixmim.runs.rundir import stage_dir

__all__ = ["STAGE", "NonFiniteLossError", "PretrainTask", "pretrain", "pretrain_recipe", "train_pretrain"]

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
    """Pre-train ``method`` on ``train_dataset`` as ``cfg.pretrain`` says: the ``pretrain`` stage, through the
    stage runner (:func:`~mixmim.engine.stage.run_stage`: skipped when its ``result.json`` exists).

    Resumes from ``checkpoint-last.pth`` when present. Writes ``metrics.jsonl``, ``tb/``, checkpoints,
    ``encoder.pth`` (the ``encoder.`` weights, prefix stripped); the runner writes ``result.json`` and the
    ``pretrain`` manifest entry.

    Args:
        method: ``forward(images [B,3,H,W], mask=None) -> dict`` with a scalar ``loss``; optional
            ``generator`` / ``reseed(seed)``, ``lr_scale_base``, ``no_weight_decay()``.
        train_dataset: samples ``(image, label, corrupt)`` (or ``(image, label)``).
        log_every: optimizer steps between metric records.

    Returns:
        The result as written to ``result.json``: ``stage``, ``status``, ``metrics`` and the recipe used
        (on rank 0; other ranks get ``{"stage": "pretrain"}``).
    """
    return run_stage(STAGE, cfg, run_dir, lambda ctx: train_pretrain(ctx, method, train_dataset, log_every),
                     device=device)  # fmt: skip


def train_pretrain(ctx: StageContext, method: nn.Module, train_dataset: Dataset, log_every: int = 10
                   ) -> StageResult:  # fmt: skip
    """The pre-training work of the stage: :class:`PretrainTask` through the :class:`Trainer`."""
    task = PretrainTask(method, train_dataset, ctx.cfg, ctx.run_dir, ctx.env, ctx.device, stage=ctx)
    trainer = Trainer(task, ctx.cfg.seed, stage_dir(ctx.run_dir, STAGE), ctx.run_dir.name, ctx.env, task.device,
                      ctx.cfg.data.num_workers, log_every)  # fmt: skip
    return trainer.run()


def pretrain_recipe(cfg: RunConfig, method: nn.Module, world_size: int, device: torch.device, n: int) -> Recipe:
    """The recipe of ``cfg.pretrain`` over ``n`` images; a method's ``lr_scale_base`` (SimMIM: 512) wins."""
    base = int(getattr(method, "lr_scale_base", cfg.pretrain.lr_scale_base))
    if base != cfg.pretrain.lr_scale_base:
        logger.warning("%s scales the lr by batch/%d (config: %d)", type(method).__name__, base,
                       cfg.pretrain.lr_scale_base)  # fmt: skip
    return make_recipe(cfg.pretrain, world_size, device, n, lr_scale_base=base, stage="pretrain")


class PretrainTask(TrainTask):
    """Pre-training as a :class:`~mixmim.engine.trainer.TrainTask`: a method's ``forward(images)["loss"]``.

    ``adamw``: how the optimizer runs its update (:data:`~mixmim.engine.optim.ADAMW_IMPLS`; training uses
    ``auto``, the benchmark times the others beside it).
    """

    def __init__(self, method: nn.Module, dataset: Dataset, cfg: RunConfig, run_dir: Path, env: DistEnv,
                 device: torch.device, adamw: str = "auto", stage: StageContext | None = None):  # fmt: skip
        pt = cfg.pretrain
        self.cfg, self.run_dir, self.env, self.device = cfg, run_dir, env, device
        self.stage, self.train_set, self.config = STAGE, dataset, to_dict(pt)
        self.method = self.module = self.trainable = method.to(device).train()
        self.dataset = dataset
        self.collate_fn = loader_collate(dataset, device)  # data.decode=gpu: JPEG bytes, decoded in the step
        self.recipe = pretrain_recipe(cfg, method, env.world_size, device, len(dataset))
        self.optimizer = build_adamw(pretrain_param_groups(method, pt.weight_decay, pt.official_quirks),
                                     betas=tuple(pt.betas), implementation=adamw)  # fmt: skip
        self.clip_grad, self.nonfinite, self.compile = pt.clip_grad, pt.nonfinite, pt.compile
        self.checkpoint_every, self.checkpoint_every_steps = pt.checkpoint_every, pt.checkpoint_every_steps
        self.fingerprint = dataset_fingerprint(dataset) if env.is_main else None
        self.data_counts = dataset_counts(dataset)  # (classes, images)
        self.data_root = str(getattr(dataset, "data_root", getattr(dataset, "root", "")))
        self.stage_context = stage  # the stage runner's (None: the benchmark, which records nothing)
        self.totals: RunningTotals | None = None  # the trainer's, once it runs

    @property
    def generator(self) -> torch.Generator | None:
        return getattr(self.method, "generator", None)

    def reseed(self, seed: int) -> None:
        seed_everything(seed)
        if callable(getattr(self.method, "reseed", None)):
            self.method.reseed(seed)
        elif self.generator is not None:
            self.generator.manual_seed(seed)

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return model(inputs)["loss"]

    def on_start(self, trainer: Trainer) -> None:
        self.totals = trainer.totals
        if self.stage_context is not None:
            self.stage_context.record_started(self.stage_result({}, {}))

    # -- results -----------------------------------------------------------------------------------------
    def stage_result(self, metrics: dict[str, Any], extra: dict[str, Any]) -> StageResult:
        """The stage's result: the recipe, the data and the training time so far."""
        return StageResult(metrics=metrics, recipe=recipe_fields(self.recipe),
                           wall_time_s=self.totals.values["wall_time_s"], data_root=self.data_root,
                           data_fingerprint=self.fingerprint, data_classes=self.data_counts[0],
                           data_images=self.data_counts[1], extra=extra)  # fmt: skip

    def finish(self, trainer: Trainer) -> StageResult | None:
        """``encoder.pth`` (after the final checkpoint) and the stage's result (rank 0)."""
        if not self.env.is_main:
            return None
        loss, steps = self.totals.final_loss(), trainer.position.global_step
        meta = {"backbone": self.cfg.model.backbone, "step": steps}
        ckpt_io.save_encoder(self.method, trainer.dir / ckpt_io.ENCODER, meta=meta)
        v = self.totals.values
        done = {"steps": steps, "epochs": steps / self.recipe.steps_per_epoch, "epochs_planned": self.recipe.epochs,
                "images_per_s": self.totals.images_per_s()}  # fmt: skip
        result = self.stage_result({}, {**done, "encoder": "encoder.pth"})
        fields = stage_fields(self.cfg, result, self.device)  # the metrics repeat the recipe (reports read both)
        counts = {k: int(v[k]) for k in ("nonfinite_events", "corrupt_images", "corrupt_reads")}
        result.metrics = {"loss": loss, **fields, **done, **counts}
        return result
