"""The built-in detection engine: torchvision's Mask R-CNN on the adapter as a task of the one
:class:`~mixmim.engine.trainer.Trainer`, evaluated with pycocotools.

One process or several ranks (DDP: each rank takes its contiguous slice of every global batch of
``coco.batch_size`` images; rank 0 evaluates). Recipe, as close to ViTDet's as a small engine gets: AdamW (betas
0.9/0.999, ``coco.weight_decay``) with layer-wise lr decay (``lr_decay.py``), ViTDet's step schedule with linear warmup
(``schedule.py``, :meth:`DetectionTask.learning_rate`), autocast per ``coco.precision``, horizontal flips, one
optimizer step per batch of ``coco.batch_size`` images. No large-scale jitter: numbers of this engine are a
pipeline check, not comparable with detectron2's (``docs/coco.md``).

The trainer owns the rest: checkpoints (its schema: at the start, at every epoch end and at the end), exact
resume, the non-finite guard (``coco.nonfinite``: stop or roll back), metrics (``metrics.jsonl`` every
:data:`LOG_EVERY` steps and at the end: the window's mean loss and the lr; every epoch end: its mean loss) and
the progress bar.

Determinism: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``, and every step reseeds all
generators with ``(stream seed, step)`` (flips, RPN/RoI sampling, drop path); the stream seed is ``seed`` until
a rollback reseeds it, and is saved in the checkpoints' counters, so a resumed run continues exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from mixmim.config import CocoConfig, to_dict
from mixmim.engine.distributed import DistEnv
from mixmim.engine.optim import build_adamw
from mixmim.engine.precision import autocast, resolve_precision
from mixmim.engine.progress import interactive
from mixmim.engine.recipe import Recipe
from mixmim.engine.rng import seed_everything
from mixmim.engine.trainer import Trainer, TrainTask
from mixmim.transfer.coco_data import CocoDetectionDataset, CocoSplit
from mixmim.transfer.evaluation import coco_metrics, predictions_to_coco
from mixmim.transfer.lr_decay import detection_param_groups
from mixmim.transfer.schedule import lr_factor

log = logging.getLogger(__name__)

LR_SCALE_BASE = 64  # ViTDet: lr 1e-4 at 64 images per step, so lr = blr * batch / 64
LOG_EVERY = 10
STEP_SEED = "detection/step_seed"  # the checkpoint counter holding the stream seed of the per-step reseeding

DetectionBatch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]  # images [3,H,W], their targets


def detection_recipe(cfg: CocoConfig, num_train_images: int, device: torch.device, world_size: int = 1) -> Recipe:
    """``epochs`` of ``num_train_images`` at ``batch_size`` images per step, all ranks together (the last
    partial batch dropped; each rank takes ``batch_size / world_size`` of them); ``max_steps`` (when set) stops
    the run early, the schedule stays that of ``epochs``.

    Raises:
        ValueError: fewer training images than one batch, or a batch that does not divide by the ranks.
    """
    if cfg.batch_size % world_size:
        raise ValueError(f"coco.batch_size={cfg.batch_size} images per step do not divide among {world_size} "
                         f"ranks: use a multiple of {world_size}")  # fmt: skip
    steps_per_epoch = num_train_images // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train_images} training images give no full batch of coco.batch_size="
                         f"{cfg.batch_size}: lower it")  # fmt: skip
    total = max(1, round(cfg.epochs * steps_per_epoch))
    run = min(total, cfg.max_steps) if cfg.max_steps > 0 else total
    lr = cfg.lr if cfg.lr > 0 else cfg.blr * cfg.batch_size / LR_SCALE_BASE
    return Recipe(batch_size=cfg.batch_size // world_size, world_size=world_size, accum_iter=1,
                  effective_batch=cfg.batch_size,
                  blr=cfg.blr, lr=lr, lr_scale_base=LR_SCALE_BASE, min_lr=0.0,
                  precision=resolve_precision(cfg.precision, device), epochs=cfg.epochs,
                  iters_per_epoch=steps_per_epoch, total_steps=total, warmup_steps=min(cfg.warmup_steps, total),
                  max_steps=run)  # fmt: skip


def batch_indices(step: int, recipe: Recipe, num_images: int, seed: int) -> list[int]:
    """Dataset indices of optimizer step ``step`` (all ranks): a seeded permutation per epoch, cut into batches
    of ``recipe.effective_batch``."""
    epoch, within = divmod(step, recipe.steps_per_epoch)
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    batch = recipe.effective_batch
    return order[within * batch : (within + 1) * batch].tolist()


def flip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Horizontal flip of an image [3, H, W] and its boxes (x1, y1, x2, y2) and masks [N, H, W]."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


class DetectionTask(TrainTask):
    """Mask R-CNN training on ``train_set`` (the ``coco`` stage's task); :meth:`finish` evaluates ``val_split``.

    Args:
        model: images (list of [3,H,W]) and targets -> a dict of losses (train mode) or detections (eval mode).
        encoder: the backbone inside ``model`` (its blocks get the layer-wise lr decay).
        seed: the data order's and the per-step reseeding's seed.
        env: this rank's place; rank ``r`` trains on its slice of each global batch, reseeded with stream seed
            ``seed + r`` (the trainer's per-rank seeding).
    """

    def __init__(self, model: nn.Module, encoder: nn.Module, cfg: CocoConfig, train_set: CocoDetectionDataset,
                 val_split: CocoSplit, seed: int, device: torch.device, env: DistEnv | None = None):  # fmt: skip
        self.stage, self.cfg, self.val_split, self.seed, self.device = "coco", cfg, val_split, seed, device
        self.env = env or DistEnv()
        self.module = self.trainable = model.to(device)
        self.recipe = detection_recipe(cfg, len(train_set), device, self.env.world_size)
        groups = detection_param_groups(model, encoder, cfg.weight_decay, cfg.layer_decay)
        self.optimizer = build_adamw(groups, betas=(0.9, 0.999))
        self.train_set, self.config, self.nonfinite = train_set, to_dict(cfg), cfg.nonfinite
        self.step_seed = seed  # the stream seed of the per-step reseeding; a rollback changes it

    # -- the RNG policy, the data and the schedule --------------------------------------------------------
    def reseed(self, seed: int) -> None:
        self.step_seed = seed
        seed_everything(seed)

    def counters(self) -> dict[str, float]:
        return {STEP_SEED: float(self.step_seed - self.env.rank)}  # rank 0's (rank r's is it + r); rank 0 saves

    def load_counters(self, counters: dict[str, float]) -> None:
        self.step_seed = int(counters.get(STEP_SEED, self.seed)) + self.env.rank

    def batches(self, epoch: int, start: int) -> Iterator[DetectionBatch]:
        """Steps ``start..`` of ``epoch``, drawn lazily (each when the trainer asks for it); one batch per
        optimizer step (``accum_iter`` 1), so a batch's index in the run is its optimizer step."""
        spe = self.recipe.steps_per_epoch
        return (self.batch(epoch * spe + within) for within in range(start, spe))

    def batch(self, step: int) -> DetectionBatch:
        """The images and targets of optimizer step ``step``, each flipped with probability 1/2; reseeds every
        generator first (so the flips, the RPN/RoI sampling and drop path of a step depend on it alone)."""
        seed_everything(self.step_seed * 1_000_003 + step)
        images, targets = [], []
        b, rank = self.recipe.batch_size, self.env.rank
        for index in batch_indices(step, self.recipe, len(self.train_set), self.seed)[rank * b : (rank + 1) * b]:
            image, target = self.train_set[index]
            if torch.rand(()) < 0.5:
                image, target = flip(image, target)
            images.append(image)
            targets.append(target)
        return images, targets

    def learning_rate(self, step: int) -> float:
        r = self.recipe
        return r.lr * lr_factor(step, r.total_steps, r.warmup_steps)

    # -- a batch to a loss -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, inputs: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
             ) -> torch.Tensor:  # fmt: skip
        """The sum of Mask R-CNN's losses (RPN objectness and boxes, RoI classes, boxes and masks)."""
        losses = model(inputs, targets)
        return sum(losses.values())

    # -- the end -----------------------------------------------------------------------------------------
    def before_finish(self, trainer: Trainer) -> None:
        """Log the steps since the last metrics record (a run that ``max_steps`` ends between two records)."""
        trainer.log_window()

    @torch.no_grad()
    def evaluate(self, batch_size: int = 4) -> dict[str, float]:
        """COCOeval bbox + segm on the validation split (every image, empty ones included)."""
        dataset = CocoDetectionDataset(self.val_split, train=False)
        self.module.eval()
        bbox, segm = [], []
        for start in tqdm(range(0, len(dataset), batch_size), desc="coco eval", disable=not interactive()):
            samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            with autocast(self.recipe.precision, self.device):
                outputs = self.module([image.to(self.device) for image, _ in samples])
            for (_, target), output in zip(samples, outputs):
                b, s = predictions_to_coco(int(target["image_id"]), output, dataset.category_ids)
                bbox += b
                segm += s
        return coco_metrics(dataset.coco, bbox, segm, dataset.image_ids)

    def finish(self, trainer: Trainer) -> dict[str, Any]:
        """Validation AP and the recipe actually used (for ``result.json`` and the manifest)."""
        r, totals = self.recipe, trainer.totals
        if not self.env.is_main:
            return {}  # rank 0 evaluates and reports
        metrics = self.evaluate()
        log.info("COCO val (torchvision engine): AP box %.2f, AP mask %.2f", metrics["ap_box"], metrics["ap_mask"])
        wall = totals.values["wall_time_s"]
        return {"metrics": metrics, "epochs": self.cfg.epochs, "steps": trainer.position.global_step,
                "total_steps": r.total_steps, "effective_batch": r.effective_batch, "lr": r.lr, "blr": r.blr,
                "lr_scale_base": r.lr_scale_base, "precision": r.precision, "world_size": r.world_size,
                "wall_time_s": wall,
                "images_per_s": totals.images_per_s() if wall > 0 else None,
                "nonfinite_events": int(totals.values["nonfinite_events"])}  # fmt: skip
