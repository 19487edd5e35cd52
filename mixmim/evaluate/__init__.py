"""Downstream evaluations of a pre-trained encoder, each a stage ``run_<name>(cfg, run_dir) -> dict``.

- ``finetune``: end-to-end fine-tuning with the official MixMIM recipe (layer decay 0.7, official layer ids).
- ``linprobe``: MAE's linear probe (frozen encoder, BatchNorm without affine + linear head, LARS).
- ``knn``: weighted kNN on frozen, L2-normalised features (k=20, T=0.07, cosine; DINO).

Every stage is idempotent (a ``result.json`` in its folder means done: it is returned without work) and
resumable (``checkpoint-last.pth``), loads its encoder as ``cfg.init`` says (``pretrain`` | ``random`` | a
checkpoint path: :func:`mixmim.weights.init_source.resolve_init`) and records its recipe in ``result.json`` and
``manifest.json``.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixmim.config import RunConfig
from mixmim.evaluate.accuracy import evaluate_classifier, topk_correct
from mixmim.evaluate.features import extract_features, pooled_features
from mixmim.evaluate.finetune import run_finetune
from mixmim.evaluate.knn import knn_accuracy, knn_scores, run_knn
from mixmim.evaluate.layer_decay import finetune_param_groups
from mixmim.evaluate.linprobe import LinearProbeHead, ProbeModel, build_probe_optimizer, run_linprobe
from mixmim.evaluate.weights import build_eval_backbone

EVALUATIONS: dict[str, Callable[[RunConfig, Path], dict[str, Any]]] = {
    "finetune": run_finetune,
    "linprobe": run_linprobe,
    "knn": run_knn,
}

__all__ = [
    "EVALUATIONS",
    "LinearProbeHead",
    "ProbeModel",
    "build_eval_backbone",
    "build_probe_optimizer",
    "evaluate_classifier",
    "extract_features",
    "finetune_param_groups",
    "knn_accuracy",
    "knn_scores",
    "pooled_features",
    "run_finetune",
    "run_knn",
    "run_linprobe",
    "topk_correct",
]
