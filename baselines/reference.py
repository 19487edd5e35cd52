"""Each method built with its source recipe on a given backbone: what the benchmark times and the FLOP table
counts (``experiments/bench.py``, ``scripts/count_flops.py``), beside the experiments' own runs."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from baselines.registry import build_method, method_card, method_defaults
from mixmim.config import RunConfig, apply_overrides

MethodBuild = Callable[[str], tuple[torch.nn.Module, RunConfig]]


@contextlib.contextmanager
def method_builder(backbone: str, img_size: int, overrides: list[str] | None = None) -> Iterator[MethodBuild]:
    """A function ``name -> (method, run config)``: the source recipe of each method on ``backbone``, then
    ``overrides`` (the config's ``pretrain`` section is the recipe the benchmarked trainer runs).

    A method that predicts visual tokens (BEiT: ``MethodCard.uses_tokenizer``) gets a random k-means codebook of
    its vocabulary size (the step cost does not depend on its values), in a temporary folder that lives as long
    as the ``with`` block.
    """
    with tempfile.TemporaryDirectory(prefix="mixmim-bench-") as tmp:

        def build(name: str) -> tuple[torch.nn.Module, RunConfig]:
            recipe = {**method_defaults(name, backbone), "model.backbone": backbone, "model.img_size": img_size}
            if method_card(name).uses_tokenizer:
                recipe.update({"method.tokenizer": "kmeans", "method.tokenizer_path": random_codebook(tmp)})
            cfg = apply_overrides(apply_overrides(RunConfig(), recipe), list(overrides or []))
            return build_method(cfg), cfg

        yield build


def random_codebook(folder: str, vocab_size: int = 8192, cell_resolution: int = 4) -> str:
    """Write a random k-means codebook (BEiT's default vocabulary) into ``folder`` and return its path."""
    from baselines.tokenizers.kmeans import KMeansTokenizer

    path = Path(folder) / "kmeans.pt"
    if not path.exists():
        centroids = torch.randn(vocab_size, cell_resolution**2 * 3, generator=torch.Generator().manual_seed(0))
        KMeansTokenizer(centroids, cell_resolution).save(path)
    return str(path)
