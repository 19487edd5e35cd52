"""The stage functions every experiment chains: ``run_<stage>(cfg, run_dir) -> dict``.

Module-level functions (Slurm jobs unpickle them by name). Each imports its implementation lazily, so
that ``mixmim-bench list`` stays fast and a missing optional dependency (detectron2) fails only the
stage that needs it, with its own message. Each first prepares its process (:func:`prepare_process`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import baselines.registry  # noqa: F401  (declares method.name's closed set, which run_stage checks; torch-free)
from mixmim.config import RunConfig, check_registry

StageFn = Callable[[RunConfig, Path], dict[str, Any]]

# What the stages import, for local ranks to import once (``slurm.StageSpec.preload``): the fork server that
# forks the ranks of every stage imports these at the first launch (seconds per stage on a small machine).
RANK_PRELOAD = ("torch", "torchvision", "timm", "sklearn.datasets", "mixmim.evaluate", "baselines")


def prepare_process() -> None:
    """Process-level tuning before a stage runs (in the CLI's process or a Slurm job's).

    Without a GPU, glibc keeps freed memory (``mixmim.engine.host_memory.keep_freed_memory``: exact, and
    about 10% off a CPU training step, which otherwise page-faults its activations in at every step).
    GPU processes keep glibc's default, which hands memory back (long runs, many loader workers).
    """
    import torch

    from mixmim.engine.host_memory import keep_freed_memory

    if not torch.cuda.is_available():
        keep_freed_memory()


def run_tokenizer(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Fit BEiT's offline tokenizer on the training data (cached in ``<run_dir>/tokenizer``)."""
    prepare_process()
    from baselines.tokenizers import run_tokenizer_stage

    return run_tokenizer_stage(cfg, Path(run_dir))


def run_pretrain(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Pre-train ``cfg.method.name`` on ``cfg.model.backbone`` with the engine's one loop (the stage runner
    skips a done stage before anything is built: a tokenizer may be needed otherwise)."""
    prepare_process()
    from baselines import build_method
    from mixmim.data import build_pretrain_set
    from mixmim.engine.stage import run_stage
    from mixmim.pretrain.task import STAGE, train_pretrain

    def work(ctx):
        method = build_method(cfg, run_dir=Path(run_dir))
        return train_pretrain(ctx, method, build_pretrain_set(cfg.data, method.encoder.img_size))

    return run_stage(STAGE, cfg, run_dir, work)


def run_finetune(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    prepare_process()
    from mixmim.evaluate import run_finetune as stage

    return stage(cfg, Path(run_dir))


def run_linprobe(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    prepare_process()
    from mixmim.evaluate import run_linprobe as stage

    return stage(cfg, Path(run_dir))


def run_knn(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    prepare_process()
    from mixmim.evaluate import run_knn as stage

    return stage(cfg, Path(run_dir))


def run_coco(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    prepare_process()
    from mixmim.transfer import run_coco as stage

    return stage(cfg, Path(run_dir))


STAGES: dict[str, StageFn] = {
    "tokenizer": run_tokenizer,
    "pretrain": run_pretrain,
    "finetune": run_finetune,
    "linprobe": run_linprobe,
    "knn": run_knn,
    "coco": run_coco,
}
check_registry("stages", STAGES)
