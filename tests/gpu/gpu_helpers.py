"""Small pieces of the GPU-path tests: the test sizes of every method and a Trainer over the built-in digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from baselines import CARDS, METHODS, build_method, method_defaults
from baselines.tokenizers import KMeansTokenizer
from mixmim.config import RunConfig, apply_overrides
from mixmim.data import build_dataset, pretrain_transform
from mixmim.engine.distributed import init_distributed
from mixmim.engine.trainer import Trainer
from mixmim.pretrain.task import STAGE, PretrainTask
from mixmim.runs.rundir import stage_dir

NO_CUDA = "needs a CUDA device (torch.cuda.is_available() is False); run scripts/gpu-check on a GPU machine"
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)


def device_cases(cpu: tuple[str, ...], cuda: tuple[str, ...]) -> list:
    """``(device, precision)`` parameters: the CPU ones plain, the CUDA ones marked ``gpu`` and skipped without
    CUDA."""
    cases = [pytest.param("cpu", p, id=f"cpu-{p}") for p in cpu]
    cases += [pytest.param("cuda", p, id=f"cuda-{p}", marks=(pytest.mark.gpu, requires_cuda)) for p in cuda]
    return cases


BACKBONES = ("mixmim_tiny_32", "mixmim_vit_tiny_patch4_32")  # the hierarchical backbone and the plain ViT
METHOD_NAMES = tuple(METHODS)
IMG, VOCAB = 32, 16
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {name: dict(card.test_settings) for name, card in CARDS.items()}


def fit_codebook(backbone: str, path: Path) -> Path:
    """A 16-token k-means codebook at ``backbone``'s token grid, fitted on smooth random images."""
    grid = (8, 8) if backbone.startswith("mixmim_vit_") else (4, 4)
    coarse = torch.randn(32, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    images = F.interpolate(coarse, size=(IMG, IMG), mode="bicubic", align_corners=False)
    KMeansTokenizer.fit(images, grid, VOCAB, seed=0).save(path)
    return path


def codebook_for(name: str, backbone: str, codebooks: dict[str, Path]) -> Path | None:
    """The test codebook of ``backbone`` for a method that predicts visual tokens (its card's ``uses_tokenizer``)."""
    return codebooks[backbone] if CARDS[name].uses_tokenizer else None


def small_config(name: str, backbone: str, codebook: Path | None, **overrides: Any) -> RunConfig:
    """``name``'s source recipe on a test backbone at 32 px over 32 digits (``overrides``: dotted keys)."""
    values = {**method_defaults(name), **SMALL_OVERRIDES[name], "model.backbone": backbone, "model.drop_path": 0.0,
              "data.digits_size": IMG, "data.max_train_images": 32, "pretrain.batch_size": 8, "pretrain.epochs": 1,
              "pretrain.warmup_epochs": 0, "pretrain.max_steps": 2, "pretrain.lr": 1e-3}  # fmt: skip
    if codebook is not None:
        values["method.tokenizer_path"] = str(codebook)
    return apply_overrides(RunConfig(experiment="gpu", name=f"{name}-{backbone}"), {**values, **overrides})


def small_trainer(
    name: str, backbone: str, codebooks: dict[str, Path], device: str, precision: str, run_dir: Path
) -> Trainer:
    """The real pre-training Trainer (``PretrainTask``) of a small ``name`` at ``precision`` on ``device``."""
    cfg = small_config(name, backbone, codebook_for(name, backbone, codebooks),
                       **{"pretrain.precision": precision})  # fmt: skip
    dataset = build_dataset(cfg.data, "train", pretrain_transform(IMG, cfg.data.crop_min_scale))
    env = init_distributed()
    task = PretrainTask(build_method(cfg), dataset, cfg, run_dir, env, torch.device(device))
    return Trainer(task, cfg.seed, stage_dir(run_dir, STAGE), run_dir.name, env, task.device, log_every=1)


def small_method(name: str, backbone: str, codebooks: dict[str, Path], **method: Any):
    """A small method built through the registry (``method``: ``method.<key>`` overrides)."""
    cfg = small_config(name, backbone, codebook_for(name, backbone, codebooks),
                       **{f"method.{k}": v for k, v in method.items()})  # fmt: skip
    return build_method(cfg)
