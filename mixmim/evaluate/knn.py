"""The ``knn`` stage: weighted k-nearest-neighbour classification on frozen features (DINO's protocol).

Features: the pooled final-stage tokens (:func:`~mixmim.evaluate.features.pooled_features`) of the
evaluation transform (resize + center crop) for the train and val images, L2-normalised, so the dot product
is the cosine similarity. Each val image takes its ``k`` (20) most similar train images; neighbour ``i``
votes for its label with weight ``exp(s_i / T)`` (``T`` = 0.07); classes are ranked by their summed votes
(DINO ``eval_knn.py``). Top-1/top-5 in percent.

Resuming: the train and val features are stored in the stage folder as soon as they are extracted
(``features-<split>.pth``, atomic), so a run killed during the val pass or the vote does not extract the
train set again; they are deleted when ``result.json`` is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mixmim.config import RunConfig
from mixmim.data import build_dataset, dataset_fingerprint, eval_transform
from mixmim.engine.checkpoint import atomic_torch_save, load_checkpoint
from mixmim.engine.distributed import DistEnv
from mixmim.engine.stage import StageContext, StageResult, run_stage
from mixmim.evaluate.accuracy import topk_correct
from mixmim.evaluate.features import extract_features
from mixmim.evaluate.weights import build_eval_backbone
from mixmim.runs.rundir import stage_dir
from mixmim.weights.init_source import InitSource

logger = logging.getLogger(__name__)

STAGE = "knn"
PRECISION = "fp32"  # DINO extracts kNN features in full precision


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Summed neighbour votes per class: [Q, num_classes].

    Args:
        train_features: [N, C], L2-normalised.
        train_labels: [N] int64 in ``[0, num_classes)``.
        query_features: [Q, C], L2-normalised.
        k: neighbours per query (capped at N).
        temperature: ``T`` of the vote weight ``exp(cosine / T)``.
        chunk_size: queries per similarity matrix ([chunk, N] floats in memory).
    """
    k = min(k, len(train_features))
    train_labels = train_labels.to(train_features.device)
    votes = []
    for start in range(0, len(query_features), chunk_size):
        query = query_features[start : start + chunk_size].to(train_features.device)  # [q, C]
        similarity = query @ train_features.T  # [q, N] cosine
        top_sim, top_idx = similarity.topk(k, dim=1)  # [q, k], most similar first
        weights = (top_sim / temperature).exp()  # [q, k]
        chunk_votes = torch.zeros(len(query), num_classes, dtype=weights.dtype, device=weights.device)
        votes.append(chunk_votes.scatter_add_(1, train_labels[top_idx], weights).cpu())
    return torch.cat(votes) if votes else torch.zeros(0, num_classes)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Top-1/top-5 (percent) of the weighted kNN classifier; features are L2-normalised here.

    Args:
        train_features, val_features: [N, C] and [Q, C], any scale.
        train_labels, val_labels: [N] and [Q] int64.
        device: where the similarity is computed (the features' device by default).
    """
    device = device or train_features.device
    train = F.normalize(train_features.float().to(device), dim=1)
    query = F.normalize(val_features.float(), dim=1)
    scores = knn_scores(train, train_labels, query, num_classes, k, temperature)
    top1, top5 = topk_correct(scores, val_labels.cpu(), (1, 5))
    return {"top1": 100.0 * top1 / len(val_labels), "top5": 100.0 * top5 / len(val_labels)}


def cached_features(
    path: Path,
    source: InitSource,
    cfg: RunConfig,
    dataset: Dataset,
    extract: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    env: DistEnv,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``dataset`` from ``path`` when it holds them for the same weights, else ``extract()``
    (and store them on rank 0)."""
    key = {**source.describe(), "backbone": cfg.model.backbone, "img_size": cfg.model.img_size,
           "images": len(dataset)}  # fmt: skip
    if path.is_file():
        stored = load_checkpoint(path)
        if stored.get("key") == key:
            logger.info("reusing features from %s", path)
            return stored["features"], stored["labels"]
        logger.info("ignoring %s: extracted for %s, not %s", path, stored.get("key"), key)
    features, labels = extract()
    if env.is_main:
        atomic_torch_save({"key": key, "features": features, "labels": labels}, path)
    return features, labels


def run_knn(cfg: RunConfig, run_dir: str | Path, *, device: torch.device | None = None) -> dict[str, Any]:
    """The ``knn`` stage: kNN top-1/top-5 of the frozen encoder ``cfg.init`` (``cfg.knn``: k, temperature).

    Skipped when ``<run_dir>/knn/result.json`` exists (its content is returned).

    Returns:
        The result as written to ``result.json`` (``metrics``: ``top1``, ``top5``, percent).
    """
    return run_stage(STAGE, cfg, run_dir, _knn, device=device)


def _knn(ctx: StageContext) -> StageResult | None:
    """The stage's work: features of both splits (every rank its shard), then kNN on rank 0."""
    cfg, run_dir, env, device = ctx.cfg, ctx.run_dir, ctx.env, ctx.device
    start = time.monotonic()
    folder = stage_dir(run_dir, STAGE)
    # the runner seeded every generator: the random-init control is the same encoder in every stage
    backbone, source = build_eval_backbone(cfg, run_dir, num_classes=0)
    backbone.to(device)
    transform = eval_transform(backbone.img_size)
    datasets = {split: build_dataset(cfg.data, split, transform) for split in ("train", "val")}
    features = {}
    for split, dataset in datasets.items():

        def extract(dataset: Dataset = dataset, split: str = split) -> tuple[torch.Tensor, torch.Tensor]:
            return extract_features(backbone, dataset, cfg.knn.batch_size, device, PRECISION, env,
                                    cfg.data.num_workers, desc=f"knn {split} features")  # fmt: skip

        features[split] = cached_features(folder / f"features-{split}.pth", source, cfg, dataset, extract, env)
    if not env.is_main:
        return None
    (train_x, train_y), (val_x, val_y) = features["train"], features["val"]
    num_classes = len(datasets["train"].classes)
    metrics = knn_accuracy(train_x, train_y, val_x, val_y, num_classes, cfg.knn.k, cfg.knn.temperature, device)
    wall = time.monotonic() - start
    recipe = {"effective_batch": cfg.knn.batch_size * env.world_size, "lr": None, "blr": None,
              "lr_scale_base": None, "precision": PRECISION, "world_size": env.world_size,
              "epochs": 0}  # fmt: skip
    for split in features:  # the result is written next, by the runner: features are cheap to extract again
        (folder / f"features-{split}.pth").unlink(missing_ok=True)
    return StageResult(
        metrics=metrics, recipe=recipe, wall_time_s=wall, data_root=str(getattr(datasets["train"], "root", "")),
        data_fingerprint=dataset_fingerprint(datasets["train"]),
        data_classes=num_classes,
        data_images=len(datasets["train"]),
        extra={
            **source.describe(),
            "steps": 0,
            "k": cfg.knn.k,
            "temperature": cfg.knn.temperature,
            "train_images": len(train_y),
            "val_images": len(val_y),
            "images_per_s": (len(train_y) + len(val_y)) / max(wall, 1e-9),
        },
    )
