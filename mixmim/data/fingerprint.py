"""Dataset fingerprints for the manifest: a short hash that changes when the file list changes.

A folder dataset is hashed from its sorted (relative path, size) list, which is cheap (no file is read)
and catches added, removed, renamed and re-encoded files. An in-memory dataset (the built-in digits) is
hashed from its pixels and labels.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def fingerprint_files(root: str | Path, paths: Iterable[str | Path]) -> str:
    """SHA-256 (hex) of the sorted ``(path relative to root, size in bytes)`` list of ``paths``."""
    root = Path(root)
    entries = sorted((Path(os.path.relpath(p, root)).as_posix(), os.stat(p).st_size) for p in paths)
    digest = hashlib.sha256()
    for rel, size in entries:
        digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 (hex) of the arrays' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset: Any) -> str | None:
    """The fingerprint of a dataset built by :func:`mixmim.data.build_dataset` (None for others).

    Looks through ``torch.utils.data.Subset`` wrappers (the fingerprint is then the parent's).
    """
    while not hasattr(dataset, "fingerprint") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset.fingerprint() if hasattr(dataset, "fingerprint") else None


def dataset_counts(dataset: Any) -> tuple[int | None, int]:
    """``(classes, images)`` of a training dataset: the class count of the dataset under any
    ``torch.utils.data.Subset`` wrappers (its ``classes``; None when it has none) and the images the stage reads
    (``len``: after ``data.max_train_images``). The report compares both with the reference's dataset."""
    images = len(dataset)
    while not hasattr(dataset, "classes") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return (len(classes) if classes is not None else None), images
