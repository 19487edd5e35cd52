"""An offline BEiT tokenizer that needs no download: a k-means codebook of image cells, fitted by the suite.

Each target cell (one visual token) is described by its ImageNet-normalised pixels average-pooled to
``r x r`` (``cell_resolution``; 4 -> 48 values); its token is the nearest of ``K`` centroids (squared L2).
The centroids are fitted on the training images with scikit-learn's k-means (k-means++ seeding, Lloyd
iterations) on one thread, so that a seed gives the same codebook on any machine.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from baselines.tokenizers.interface import Tokenizer
from mixmim.pretrain.targets import patchify
from mixmim.runs.rundir import atomic_write_bytes

log = logging.getLogger(__name__)

FILE_FORMAT = "mixmim-bench/kmeans-tokenizer"
CELL_RESOLUTION = 4  # r: a cell is pooled to r x r pixels, 48 values (the tokenizer stage fits with it)


def cell_features(images: torch.Tensor, grid: tuple[int, int], cell_resolution: int) -> torch.Tensor:
    """images [B, 3, H, W] -> one feature per cell [B, h*w, r*r*3] (cells pooled to ``r x r`` pixels)."""
    h, w = grid
    pooled = F.adaptive_avg_pool2d(images.float(), (h * cell_resolution, w * cell_resolution))  # [B, 3, hr, wr]
    return patchify(pooled, cell_resolution)


class KMeansTokenizer(Tokenizer):
    """Nearest-centroid tokens. ``centroids`` [K, r*r*3] is a buffer, so ``.to(device)`` moves it."""

    def __init__(self, centroids: torch.Tensor, cell_resolution: int = CELL_RESOLUTION,
                 fit_info: dict[str, Any] | None = None):
        super().__init__()
        if centroids.ndim != 2 or centroids.shape[1] != cell_resolution**2 * 3:
            raise ValueError(f"centroids must be [K, {cell_resolution**2 * 3}] for cell_resolution "
                             f"{cell_resolution}, got {tuple(centroids.shape)}")
        self.register_buffer("centroids", centroids.float().contiguous())
        self.cell_resolution = cell_resolution
        self.vocab_size = centroids.shape[0]
        self.fit_info = dict(fit_info or {})

    @torch.no_grad()
    def forward(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """images [B, 3, H, W] (ImageNet-normalised) -> codes [B, h, w] int64."""
        feats = cell_features(images, grid, self.cell_resolution)  # [B, L, D]
        dist = torch.cdist(feats, self.centroids[None].expand(feats.shape[0], -1, -1))  # [B, L, K]
        return dist.argmin(dim=-1).reshape(images.shape[0], *grid)

    @classmethod
    def fit(cls, images: torch.Tensor | Iterable[torch.Tensor], grid: tuple[int, int], vocab_size: int,
            seed: int = 0, cell_resolution: int = CELL_RESOLUTION, max_samples: int = 100_000,
            max_iter: int = 100) -> KMeansTokenizer:
        """Fit ``vocab_size`` centroids on the cells of ``images`` (a [N, 3, H, W] tensor or batches of them).

        At most ``max_samples`` cells are used, a subset drawn with ``seed``; the same images and seed give
        the same codebook (k-means runs on one thread).

        Raises:
            ValueError: fewer cells than ``vocab_size``.
        """
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        batches = [images] if isinstance(images, torch.Tensor) else images
        feats = torch.cat([cell_features(b, grid, cell_resolution).flatten(0, 1) for b in batches])  # [N, D]
        if feats.shape[0] < vocab_size:
            raise ValueError(f"{feats.shape[0]} cells cannot fit a vocabulary of {vocab_size}; use more images "
                             "or a smaller method.vocab_size")
        gen = torch.Generator().manual_seed(seed)
        if feats.shape[0] > max_samples:
            feats = feats[torch.randperm(feats.shape[0], generator=gen)[:max_samples]]
        data = feats.double().numpy()
        kmeans = KMeans(n_clusters=vocab_size, init="k-means++", n_init=1, max_iter=max_iter, random_state=seed,
                        algorithm="lloyd")
        with threadpool_limits(limits=1):  # the same result whatever the machine's core count
            kmeans.fit(data)
        info = {"seed": seed, "num_samples": int(data.shape[0]), "inertia": float(kmeans.inertia_),
                "iterations": int(kmeans.n_iter_), "grid": list(grid)}
        log.info("k-means tokenizer: %d centroids from %d cells, inertia %.4g after %d iterations",
                 vocab_size, data.shape[0], kmeans.inertia_, kmeans.n_iter_)
        return cls(torch.from_numpy(np.asarray(kmeans.cluster_centers_)).float(), cell_resolution, info)

    def save(self, path: str | Path) -> None:
        """Write the codebook atomically (a ``torch.save`` dict readable with ``weights_only=True``)."""
        buf = io.BytesIO()
        torch.save({"format": FILE_FORMAT, "version": 1, "centroids": self.centroids.cpu(),
                    "cell_resolution": self.cell_resolution, "fit_info": self.fit_info}, buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> KMeansTokenizer:
        """Read a codebook written by :meth:`save`.

        Raises:
            FileNotFoundError: no file (run the ``tokenizer`` stage first).
            ValueError: the file is not a k-means codebook of this suite.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"k-means codebook {path} does not exist; run the 'tokenizer' stage "
                                    "(baselines.tokenizers.run_tokenizer_stage) first")
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a k-means tokenizer codebook (expected a file written by "
                             f"KMeansTokenizer.save, with format '{FILE_FORMAT}')")
        return cls(obj["centroids"], int(obj["cell_resolution"]), obj.get("fit_info"))
