"""The ``coco`` stage: Mask R-CNN transfer with the built-in (torchvision) or the detectron2 engine.

``run_coco(cfg, run_dir)`` checks everything it can before training (engine installed, annotation files and
images, the initial checkpoint), then trains, evaluates with COCO's AP and writes ``<run_dir>/coco/result.json``:
``status``, ``metrics`` (``ap_box``, ``ap_box50``, ``ap_box75``, ``ap_box_s/m/l`` and the same for
``ap_mask``), ``engine`` and the recipe used. A done stage is returned without work; an interrupted one
resumes from its checkpoint. ``coco.root`` empty: the built-in dataset is generated in ``<run_dir>/coco/data``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mixmim.config import CocoConfig, RunConfig, to_dict
from mixmim.engine.distributed import barrier, default_device, env_from_variables, init_distributed
from mixmim.engine.manifest import record_manifest
from mixmim.rundir import is_done, read_result, stage_dir, write_result
from mixmim.transfer.adapter import PyramidAdapter, build_adapter
from mixmim.transfer.coco_data import CocoDetectionDataset, check_coco_split, coco_splits
from mixmim.transfer.layout import ATTENTION_LAYOUTS
from mixmim.transfer.tiny_coco import TinyCocoSpec, generate_tiny_coco
from mixmim.transfer.weights import load_pretrained, resolve_init

log = logging.getLogger(__name__)

STAGE = "coco"
ENGINES = ("torchvision", "detectron2")


def check_options(cfg: CocoConfig) -> None:
    """Reject unknown option values before any work.

    Raises:
        ValueError: naming the key and the allowed values.
    """
    if cfg.engine not in ENGINES:
        raise ValueError(f"coco.engine must be one of {ENGINES}, got {cfg.engine!r}")
    if cfg.attention not in ATTENTION_LAYOUTS:
        raise ValueError(f"coco.attention must be one of {ATTENTION_LAYOUTS}, got {cfg.attention!r}")
    if cfg.heads not in ("standard", "compact"):
        raise ValueError(f"coco.heads must be 'standard' or 'compact', got {cfg.heads!r}")
    if cfg.batch_size < 1 or cfg.img_size < 32:
        raise ValueError("coco.batch_size must be >= 1 and coco.img_size >= 32")


def builtin_spec(img_size: int, seed: int = 0) -> TinyCocoSpec:
    """The built-in dataset drawn at the detection size (clamped to 64-256 px), objects 20-50 % of a side."""
    size = max(64, min(256, img_size))
    return TinyCocoSpec(size=size, min_object=round(0.2 * size), max_object=round(0.5 * size), seed=seed)


def prepare_data(cfg: CocoConfig, stage_path: Path) -> tuple[Path, dict[str, dict[str, int]]]:
    """The COCO root to use (generated when ``coco.root`` is empty) and its checked splits' counts."""
    root = Path(cfg.root).expanduser() if cfg.root else generate_tiny_coco(stage_path / "data",
                                                                             builtin_spec(cfg.img_size))
    counts = {name: check_coco_split(split) for name, split in coco_splits(root).items()}
    log.info("COCO data in %s: %s", root, counts)
    return root, counts


def build_pretrained_adapter(cfg: RunConfig, init: Path | None, out_channels: int = 256) -> PyramidAdapter:
    """The adapter on ``cfg.model.backbone`` at ``coco.img_size``, with the weights of ``init`` (if any)."""
    adapter = build_adapter(cfg.model.backbone, cfg.coco.img_size, cfg.coco.attention, cfg.coco.drop_path,
                            out_channels=out_channels)
    if init is not None:
        load_pretrained(adapter, init)
    return adapter


def run_coco(cfg: RunConfig, run_dir: str | Path) -> dict[str, Any]:
    """The ``coco`` stage (see the module docstring); returns the result as written to ``result.json``.

    Raises:
        ImportError: ``coco.engine=detectron2`` without detectron2 (the message says how to install it).
        CocoDataError: a missing or malformed annotation file, or missing images.
        FileNotFoundError: the initial checkpoint is missing.
    """
    run_dir = Path(run_dir)
    if is_done(run_dir, STAGE):
        log.info("stage %s is done in %s; skipping", STAGE, run_dir)
        return read_result(run_dir, STAGE) or {}
    check_options(cfg.coco)
    if cfg.coco.engine == "detectron2":
        from mixmim.transfer.detectron2 import require_detectron2

        require_detectron2()
    init = resolve_init(cfg.init, run_dir)
    path = stage_dir(run_dir, STAGE)
    if cfg.coco.engine == "torchvision" and init_distributed().distributed and not env_from_variables().is_main:
        barrier()  # rank 0 generates the built-in data first
    root, counts = prepare_data(cfg.coco, path)
    if cfg.coco.engine == "torchvision" and env_from_variables().is_main:
        barrier()
    if cfg.coco.engine == "detectron2":
        from mixmim.transfer.detectron2.train import train_detectron2

        result = train_detectron2(cfg, root, init, path)
    else:
        result = _train_torchvision(cfg, root, init, path)
    result = {"status": "done", **result, "engine": cfg.coco.engine, "init": str(init) if init else "random",
              "attention": cfg.coco.attention, "img_size": cfg.coco.img_size, "data_root": str(root),
              "images": {name: c["images"] for name, c in counts.items()}}
    if env_from_variables().is_main:
        write_result(run_dir, STAGE, result)
        fields = {k: result.get(k) for k in ("effective_batch", "lr", "blr", "precision", "world_size", "epochs",
                                              "wall_time_s", "gpu_hours")}
        record_manifest(run_dir, cfg, result.get("world_size", 1), STAGE, {
            **fields, "lr_scale_base": result.get("lr_scale_base"), "seed": cfg.seed, "data_root": str(root),
            "data_fingerprint": None, "engine": cfg.coco.engine, "coco": to_dict(cfg.coco)})
    return result


def _train_torchvision(cfg: RunConfig, root: Path, init: Path | None, path: Path) -> dict[str, Any]:
    """Built-in engine: train with the shared trainer (resuming from ``path``), evaluate on val, return the
    metrics and the recipe."""
    from mixmim.engine.trainer import Trainer
    from mixmim.transfer.detection_task import LOG_EVERY, DetectionTask
    from mixmim.transfer.torchvision_model import COMPACT, build_maskrcnn

    env = env_from_variables()
    device = default_device(env)  # cuda:<local rank>, or the CPU
    splits = coco_splits(root)
    train_set = CocoDetectionDataset(splits["train"], train=True)
    torch.manual_seed(cfg.seed)  # the new layers' initialisation
    adapter = build_pretrained_adapter(cfg, init, COMPACT["fpn"] if cfg.coco.heads == "compact" else 256)
    model = build_maskrcnn(adapter, len(train_set.category_ids), cfg.coco.img_size, heads=cfg.coco.heads,
                           box_score_thresh=cfg.coco.score_thresh)
    task = DetectionTask(model, adapter.encoder, cfg.coco, train_set, splits["val"], cfg.seed, device, env)
    return Trainer(task, cfg.seed, path, path.parent.name, env, device, log_every=LOG_EVERY).run()
