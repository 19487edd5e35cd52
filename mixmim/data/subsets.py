"""Named class subsets of an ImageFolder dataset (``data.subset``): the class list as data, with its source.

``imagenet100``: the 100 ImageNet-1k classes of CMC (Tian et al., arXiv 1906.05849), the subset most small-scale
self-supervised results use; read from an ImageNet root (``data.root`` with ``train/`` and ``val/``), keeping
only those class folders. The list is ``subsets/<name>.txt`` (one WordNet id per line, ``#`` comments name the
source). Torch-free: the cost projection reads the class count.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from mixmim.config import CHOICES

SUBSETS_DIR = Path(__file__).with_name("subsets")
SUBSETS = tuple(name for name in CHOICES["data.subset"] if name)  # declared once, on the config ("": every class)


@cache
def subset_classes(name: str) -> tuple[str, ...]:
    """The class folder names of subset ``name``, in the list's order.

    Raises:
        ValueError: an unknown subset name.
    """
    if name not in SUBSETS:
        raise ValueError(f"data.subset must be one of {SUBSETS} (or empty for every class), got {name!r}")
    lines = (SUBSETS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
