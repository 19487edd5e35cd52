"""Train and evaluate with detectron2 (its trainer, hooks, checkpointer and ``COCOEvaluator``) for the stage.

The loop is detectron2's ``tools/lazyconfig_train_net.py``: ``AMPTrainer`` (or ``SimpleTrainer`` in fp32),
``LRScheduler``, ``PeriodicCheckpointer`` and a final evaluation. Outputs go to ``<run_dir>/coco/d2/``
(``config.yaml``, ``model_*.pth``, ``last_checkpoint``, ``metrics.json``, ``inference/``); a rerun resumes from
``last_checkpoint``. Distributed: one process per GPU, started by torchrun or Slurm (``mixmim.engine.
distributed``); detectron2's local process group is created here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import AMPTrainer, SimpleTrainer, create_ddp_model, default_writers, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from omegaconf import OmegaConf

from mixmim.config import RunConfig
from mixmim.engine.distributed import init_distributed
from mixmim.engine.precision import resolve_precision
from mixmim.transfer.coco_data import coco_splits, load_coco
from mixmim.transfer.detectron2.recipe import LR_SCALE_BASE, mask_rcnn_recipe
from mixmim.transfer.evaluation import metrics_from_detectron2

log = logging.getLogger(__name__)


def register_splits(root: Path) -> dict[str, str]:
    """Register ``root``'s train and val splits with detectron2 under names unique to the root."""
    tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
    names = {}
    for split, info in coco_splits(root).items():
        name = f"mixmim_coco_{split}_{tag}"
        if name not in DatasetCatalog.list():
            register_coco_instances(name, {}, str(info.ann_file), str(info.image_dir))
        names[split] = name
    return names


def stage_d2_config(cfg: RunConfig, root: Path, init: Path | None, output_dir: Path, device: str,
                    world_size: int) -> tuple[Any, dict[str, Any]]:
    """The detectron2 LazyConfig of a run (``mask_rcnn_recipe`` with the run's values) and its recipe summary."""
    c = cfg.coco
    names = register_splits(root)
    coco = load_coco(coco_splits(root)["train"].ann_file)
    precision = resolve_precision(c.precision, torch.device(device))
    lr = c.lr if c.lr > 0 else c.blr * c.batch_size / LR_SCALE_BASE
    nodes = mask_rcnn_recipe(
        backbone=cfg.model.backbone, epochs=c.epochs, img_size=c.img_size, batch_size=c.batch_size, lr=lr,
        layer_decay=c.layer_decay, drop_path=c.drop_path, attention=c.attention, amp=precision != "fp32",
        weight_decay=c.weight_decay, warmup_steps=c.warmup_steps, train_dataset=names["train"],
        test_dataset=names["val"], num_train_images=len(coco.getImgIds()), num_classes=len(coco.getCatIds()),
        init_checkpoint=str(init or ""), compact=c.heads == "compact",
        num_workers=cfg.data.num_workers, output_dir=str(output_dir), device=device,
        score_thresh=c.score_thresh, lsj=c.lsj)
    d2cfg = OmegaConf.create(nodes, flags={"allow_objects": True})
    total = d2cfg.train.max_iter
    if c.max_steps > 0:  # stop early on the full schedule (debug runs), as the built-in engine does
        d2cfg.train.max_iter = min(total, c.max_steps)
        d2cfg.train.eval_period = d2cfg.train.max_iter
        d2cfg.train.checkpointer.period = min(d2cfg.train.checkpointer.period, d2cfg.train.max_iter)
    summary = {"epochs": c.epochs, "steps": int(d2cfg.train.max_iter), "total_steps": int(total),
               "effective_batch": c.batch_size, "lr": lr, "blr": c.blr, "lr_scale_base": LR_SCALE_BASE,
               "precision": precision, "world_size": world_size}
    return d2cfg, summary


def _train(d2cfg: Any, model: torch.nn.Module) -> None:
    """detectron2's ``do_train`` with resume from ``last_checkpoint``."""
    d2cfg.optimizer.params.model = model
    optimizer = instantiate(d2cfg.optimizer)
    loader = instantiate(d2cfg.dataloader.train)
    ddp_model = create_ddp_model(model, **d2cfg.train.ddp)
    trainer = (AMPTrainer if d2cfg.train.amp.enabled else SimpleTrainer)(ddp_model, loader, optimizer)
    checkpointer = DetectionCheckpointer(ddp_model, d2cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(d2cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **d2cfg.train.checkpointer) if main else None,
        hooks.PeriodicWriter(default_writers(d2cfg.train.output_dir, d2cfg.train.max_iter),
                             period=d2cfg.train.log_period) if main else None,
    ])
    checkpointer.resume_or_load("", resume=True)
    start = trainer.iter + 1 if checkpointer.has_checkpoint() else 0
    if start:
        log.info("resuming detectron2 training at iteration %d", start)
    if start < d2cfg.train.max_iter:
        trainer.train(start, d2cfg.train.max_iter)
    if main and not (Path(d2cfg.train.output_dir) / "model_final.pth").is_file():
        checkpointer.save("model_final")


def train_detectron2(cfg: RunConfig, root: Path, init: Path | None, stage_path: Path) -> dict[str, Any]:
    """Train Mask R-CNN with detectron2 from ``init``, evaluate on val; return metrics and recipe."""
    env = init_distributed()
    if env.distributed and comm._LOCAL_PROCESS_GROUP is None:
        comm.create_local_process_group(torch.cuda.device_count() or 1)
    device = f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu"
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
    output_dir = stage_path / "d2"
    output_dir.mkdir(parents=True, exist_ok=True)
    d2cfg, summary = stage_d2_config(cfg, root, init, output_dir, device, env.world_size)
    if env.is_main:
        try:
            LazyConfig.save(d2cfg, str(output_dir / "config.yaml"))
        except Exception as err:  # saving is best effort: some objects are not serialisable
            log.warning("could not save the detectron2 config: %s", err)
    torch.manual_seed(cfg.seed + env.rank)
    model = instantiate(d2cfg.model).to(device)
    start = time.perf_counter()
    _train(d2cfg, model)
    wall = time.perf_counter() - start
    d2cfg.dataloader.evaluator.output_dir = str(output_dir / "inference")
    evaluator = instantiate(d2cfg.dataloader.evaluator)
    results = inference_on_dataset(model, instantiate(d2cfg.dataloader.test), evaluator)
    if env.is_main:
        print_csv_format(results)
    images = summary["steps"] * summary["effective_batch"]
    return {"metrics": metrics_from_detectron2(results), **summary, "wall_time_s": wall,  # GPU-hours: the runner
            "images_per_s": images / wall if wall > 0 else None, "detectron2_dir": str(output_dir)}
