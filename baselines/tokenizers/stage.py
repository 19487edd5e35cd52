"""The ``tokenizer`` stage (BEiT's targets) and the tokenizer a BEiT run uses.

``run_tokenizer_stage(cfg, run_dir)`` follows the stage contract (``docs/architecture.md``): it fits the
k-means codebook on the training images (``method.tokenizer=kmeans``) and caches it as
``<run_dir>/tokenizer/kmeans.pt``, or checks the DALL-E file (``method.tokenizer=dalle``), then the stage runner
(:func:`mixmim.engine.stage.run_stage`) writes ``<run_dir>/tokenizer/result.json``; a stage whose result exists
returns it without work. With several ranks, rank 0 does the work; the others wait at the runner's barrier.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from baselines.tokenizers.dalle import WHERE_TO_GET, DalleTokenizer
from baselines.tokenizers.interface import Tokenizer
from baselines.tokenizers.kmeans import KMeansTokenizer
from mixmim.backbones import create_backbone
from mixmim.config import CHOICES, MethodConfig, RunConfig
from mixmim.engine.stage import StageResult, run_stage
from mixmim.runs.rundir import stage_dir

log = logging.getLogger(__name__)

STAGE = "tokenizer"
CODEBOOK_FILE = "kmeans.pt"
TOKENIZERS = CHOICES["method.tokenizer"]  # declared once, on the config
MAX_FIT_CELLS = 100_000  # cells the k-means fit uses at most (a seeded subset of the training images)


def target_grid(cfg: RunConfig) -> tuple[tuple[int, int], int]:
    """BEiT's visual-token grid (the encoder's final token grid) and the image size of ``cfg``'s backbone."""
    with torch.device("meta"):  # sizes only, no weights
        encoder = create_backbone(cfg.model.backbone, num_classes=0, img_size=cfg.model.img_size)
    return tuple(encoder.out_grid_size), encoder.img_size


def build_tokenizer(mcfg: MethodConfig, run_dir: str | Path | None = None) -> Tokenizer:
    """The tokenizer of ``method.tokenizer``: the k-means codebook (``method.tokenizer_path``, else the one
    the ``tokenizer`` stage cached in ``run_dir``) or the DALL-E encoder at ``method.tokenizer_path``.

    Raises:
        ValueError: unknown tokenizer, or no path to read it from.
        FileNotFoundError: the codebook or weights file does not exist.
    """
    if mcfg.tokenizer == "kmeans":
        if mcfg.tokenizer_path:
            return KMeansTokenizer.load(mcfg.tokenizer_path)
        if run_dir is None:
            raise ValueError(
                "the k-means tokenizer needs the run directory (its 'tokenizer' stage caches the "
                "codebook there) or method.tokenizer_path"
            )
        return KMeansTokenizer.load(Path(run_dir) / STAGE / CODEBOOK_FILE)
    if mcfg.tokenizer == "dalle":
        if not mcfg.tokenizer_path:
            raise ValueError(f"method.tokenizer=dalle needs method.tokenizer_path. {WHERE_TO_GET}")
        return DalleTokenizer.from_file(mcfg.tokenizer_path)
    raise ValueError(f"method.tokenizer must be one of {TOKENIZERS}, got {mcfg.tokenizer!r}")


def _training_batches(cfg: RunConfig, img_size: int, max_images: int) -> Iterator[torch.Tensor]:
    """ImageNet-normalised training images (deterministic eval transform), a ``cfg.seed`` subset if large."""
    from mixmim.data import build_dataset, eval_transform

    dataset = build_dataset(cfg.data, "train", eval_transform(img_size))
    if len(dataset) > max_images:
        pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(cfg.seed))[:max_images]
        dataset = Subset(dataset, sorted(pick.tolist()))
    loader = DataLoader(dataset, batch_size=256, shuffle=False, num_workers=cfg.data.num_workers)
    for batch in loader:
        yield batch[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_tokenizer_stage(cfg: RunConfig, run_dir: str | Path) -> dict[str, Any]:
    """Fit (k-means) or check (DALL-E) the tokenizer of ``cfg.method`` on rank 0 (the other ranks wait at the
    runner's barrier), through the stage runner, which writes ``result.json``."""
    return run_stage(STAGE, cfg, run_dir, lambda ctx: fit_tokenizer(cfg, run_dir) if ctx.env.is_main else None)


def fit_tokenizer(cfg: RunConfig, run_dir: str | Path) -> StageResult:
    """Fit or check the tokenizer and save the codebook; return the stage's result (no recipe: nothing trains)."""
    start = time.time()
    mcfg = cfg.method
    out = stage_dir(run_dir, STAGE)
    if mcfg.tokenizer == "dalle":
        tokenizer = build_tokenizer(mcfg)
        record: dict[str, Any] = {
            "tokenizer": "dalle",
            "path": str(Path(mcfg.tokenizer_path).resolve()),
            "sha256": _sha256(Path(mcfg.tokenizer_path)),
        }
    elif mcfg.tokenizer == "kmeans":
        grid, img_size = target_grid(cfg)
        max_images = math.ceil(MAX_FIT_CELLS / (grid[0] * grid[1]))
        tokenizer = KMeansTokenizer.fit(
            _training_batches(cfg, img_size, max_images),
            grid,
            mcfg.vocab_size,
            seed=cfg.seed,
            max_samples=MAX_FIT_CELLS,
        )
        tokenizer.save(out / CODEBOOK_FILE)
        record = {"tokenizer": "kmeans", "codebook": CODEBOOK_FILE, **tokenizer.fit_info}
    else:
        raise ValueError(f"method.tokenizer must be one of {TOKENIZERS}, got {mcfg.tokenizer!r}")
    log.info("tokenizer fitted: %s", record)
    metrics = {"vocab_size": tokenizer.vocab_size, "inertia": record.get("inertia")}
    return StageResult(metrics=metrics, recipe=None, wall_time_s=time.time() - start, extra=record)
