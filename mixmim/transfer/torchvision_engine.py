"""The built-in detection engine: train torchvision's Mask R-CNN on the adapter, evaluate with pycocotools.

One process (CPU or one GPU). Recipe, as close to ViTDet's as a small engine gets: AdamW (betas 0.9/0.999,
``coco.weight_decay``) with layer-wise lr decay (``lr_decay.py``), ViTDet's step schedule with linear warmup
(``schedule.py``), autocast per ``coco.precision``, horizontal flips. No large-scale jitter: numbers of this
engine are a pipeline check, not comparable with detectron2's (``docs/coco.md``).

Determinism and resume: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``, and every step
reseeds all generators with ``(seed, step)`` (flips, RPN/RoI sampling, drop path), so a run resumed from
``checkpoint-last.pth`` (written at every epoch end and at the end) continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from mixmim.config import CocoConfig
from mixmim.engine.checkpoint import LAST, atomic_torch_save, load_latest_checkpoint, remove_partial_checkpoints
from mixmim.engine.metrics import MetricsLogger
from mixmim.engine.optim import build_adamw, set_lr
from mixmim.engine.precision import autocast, grad_scaler, resolve_precision
from mixmim.engine.progress import StageProgress, interactive
from mixmim.engine.rng import seed_everything
from mixmim.transfer.coco_data import CocoDetectionDataset, CocoSplit
from mixmim.transfer.evaluation import coco_metrics, predictions_to_coco
from mixmim.transfer.lr_decay import detection_param_groups
from mixmim.transfer.schedule import lr_factor

log = logging.getLogger(__name__)

LR_SCALE_BASE = 64  # ViTDet: lr 1e-4 at 64 images per step, so lr = blr * batch / 64
LOG_EVERY = 10


@dataclass(frozen=True)
class DetectionRecipe:
    """What a detection run does, resolved from ``CocoConfig`` and the training-set size."""

    batch_size: int  # images per optimizer step, all processes together
    lr: float
    blr: float
    steps_per_epoch: int
    total_steps: int  # of the full schedule (``epochs``)
    run_steps: int  # steps this run trains (``max_steps`` may stop it early)
    warmup_steps: int
    precision: str


def detection_recipe(cfg: CocoConfig, num_train_images: int, device: torch.device) -> DetectionRecipe:
    """``epochs`` of ``num_train_images`` at ``batch_size`` images per step (the last partial batch dropped).

    Raises:
        ValueError: fewer training images than one batch.
    """
    steps_per_epoch = num_train_images // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{num_train_images} training images give no full batch of coco.batch_size="
                         f"{cfg.batch_size}: lower it")
    total = max(1, round(cfg.epochs * steps_per_epoch))
    run = min(total, cfg.max_steps) if cfg.max_steps > 0 else total
    lr = cfg.lr if cfg.lr > 0 else cfg.blr * cfg.batch_size / LR_SCALE_BASE
    return DetectionRecipe(cfg.batch_size, lr, cfg.blr, steps_per_epoch, total, run,
                           min(cfg.warmup_steps, total), resolve_precision(cfg.precision, device))


def batch_indices(step: int, recipe: DetectionRecipe, num_images: int, seed: int) -> list[int]:
    """Dataset indices of optimizer step ``step``: a seeded permutation per epoch, cut into batches."""
    epoch, within = divmod(step, recipe.steps_per_epoch)
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[within * recipe.batch_size:(within + 1) * recipe.batch_size].tolist()


def flip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Horizontal flip of an image [3, H, W] and its boxes (x1, y1, x2, y2) and masks [N, H, W]."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


class TorchvisionTrainer:
    """Training and evaluation of one detector in ``stage_path`` (checkpoints, ``metrics.jsonl``)."""

    def __init__(self, model: nn.Module, encoder: nn.Module, cfg: CocoConfig, train_set: CocoDetectionDataset,
                 stage_path: Path, seed: int, device: torch.device):
        self.model, self.cfg, self.train_set, self.dir, self.seed, self.device = (
            model.to(device), cfg, train_set, stage_path, seed, device)
        self.recipe = detection_recipe(cfg, len(train_set), device)
        groups = detection_param_groups(model, encoder, cfg.weight_decay, cfg.layer_decay)
        self.optimizer = build_adamw(groups, betas=(0.9, 0.999))
        self.scaler = grad_scaler(self.recipe.precision, device)
        self.metrics = MetricsLogger(stage_path)
        self.step, self.train_time = 0, 0.0

    def save(self) -> None:
        atomic_torch_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                           "scaler": self.scaler.state_dict(), "step": self.step, "train_time": self.train_time},
                          self.dir / LAST)

    def resume(self) -> None:
        """Continue from ``checkpoint-last.pth`` when there is one."""
        remove_partial_checkpoints(self.dir)
        latest = load_latest_checkpoint(self.dir, map_location=self.device)  # the newest readable one
        if latest is None:
            return
        ckpt = latest[0]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.train_time = int(ckpt["step"]), float(ckpt["train_time"])
        self.metrics.rewind(self.step)
        log.info("resumed detection training at step %d of %d", self.step, self.recipe.run_steps)

    def train_step(self) -> dict[str, float]:
        """One optimizer step on the batch of ``self.step``; returns its losses and lr."""
        seed_everything(self.seed * 1_000_003 + self.step)  # flips, proposal sampling, drop path
        images, targets = [], []
        for idx in batch_indices(self.step, self.recipe, len(self.train_set), self.seed):
            image, target = self.train_set[idx]
            if torch.rand(()) < 0.5:
                image, target = flip(image, target)
            images.append(image.to(self.device))
            targets.append({k: v.to(self.device) for k, v in target.items()})
        lr = self.recipe.lr * lr_factor(self.step, self.recipe.total_steps, self.recipe.warmup_steps)
        set_lr(self.optimizer, lr)
        self.model.train()
        with autocast(self.recipe.precision, self.device):
            losses = self.model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite detection loss at step {self.step}: "
                                     f"{ {k: v.item() for k, v in losses.items()} }")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}, "lr": lr}

    def train(self) -> None:
        """Train until ``run_steps``; checkpoint at epoch ends and at the end."""
        self.resume()
        r = self.recipe
        epochs = -(-r.run_steps // r.steps_per_epoch)  # the steps this stage runs, in (started) epochs
        progress = StageProgress(self.dir.parent.name, self.dir.name, epochs, r.steps_per_epoch)
        progress.start_epoch(*divmod(self.step, r.steps_per_epoch))
        while self.step < self.recipe.run_steps:
            start = time.perf_counter()
            record = self.train_step()
            self.train_time += time.perf_counter() - start
            self.step += 1
            progress.step(record.get("loss"))
            if self.step % LOG_EVERY == 0 or self.step == self.recipe.run_steps:
                self.metrics.log({"step": self.step, **record})
            if self.step % self.recipe.steps_per_epoch == 0 or self.step == self.recipe.run_steps:
                self.save()
                progress.end_epoch(record.get("loss"))
                progress.start_epoch(*divmod(self.step, r.steps_per_epoch))
        self.metrics.close()

    @torch.no_grad()
    def evaluate(self, split: CocoSplit, batch_size: int = 4) -> dict[str, float]:
        """COCOeval bbox + segm on ``split`` (every image, empty ones included)."""
        dataset = CocoDetectionDataset(split, train=False)
        self.model.eval()
        bbox, segm = [], []
        for start in tqdm(range(0, len(dataset), batch_size), desc="coco eval", disable=not interactive()):
            samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            with autocast(self.recipe.precision, self.device):
                outputs = self.model([image.to(self.device) for image, _ in samples])
            for (_, target), output in zip(samples, outputs):
                b, s = predictions_to_coco(int(target["image_id"]), output, dataset.category_ids)
                bbox += b
                segm += s
        return coco_metrics(dataset.coco, bbox, segm, dataset.image_ids)

    def summary(self) -> dict[str, Any]:
        """The recipe actually used, for ``result.json`` and the manifest."""
        r = self.recipe
        images = r.run_steps * r.batch_size
        return {"epochs": self.cfg.epochs, "steps": r.run_steps, "total_steps": r.total_steps,
                "effective_batch": r.batch_size, "lr": r.lr, "blr": r.blr, "lr_scale_base": LR_SCALE_BASE,
                "precision": r.precision, "world_size": 1, "wall_time_s": self.train_time,
                "gpu_hours": self.train_time / 3600 if self.device.type == "cuda" else 0.0,
                "images_per_s": images / self.train_time if self.train_time > 0 else None}
