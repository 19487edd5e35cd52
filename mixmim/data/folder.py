"""ImageFolder datasets (ImageNet layout) that survive unreadable images.

Layout: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>`` (ImageNet, and iNaturalist or
Places exported to folders). A missing or empty root fails when the dataset is built, naming the path and
the expected layout. An unreadable or corrupt image never crashes a DataLoader worker: with
``on_corrupt="skip"`` the next readable image is returned in its place, a warning is logged and the sample
carries a flag that the engine sums into the run's metrics; with ``on_corrupt="fail"`` a
:class:`CorruptImageError` naming the file is raised.

Every sample is a triple ``(image, label, corrupt)``: ``corrupt`` is 1 when the requested file was
unreadable and a substitute was returned, else 0 (see :func:`mixmim.data.loader.unpack_batch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from mixmim.config import CHOICES
from mixmim.data.fingerprint import fingerprint_files

logger = logging.getLogger(__name__)

ON_CORRUPT = CHOICES["data.on_corrupt"]  # declared once, on the config
MAX_CONSECUTIVE_CORRUPT = 16  # more bad files in a row than this means a broken dataset, not a bad file
SPLITS = ("train", "val")


class DatasetLayoutError(FileNotFoundError):
    """The dataset path is missing, empty or not in the ImageFolder layout; the message names it."""


class CorruptImageError(OSError):
    """An image file cannot be read or decoded (``data.on_corrupt=fail``)."""


def expected_layout(root: str | Path) -> str:
    """The ImageFolder layout, spelled out with ``root`` for error messages."""
    exts = "|".join(e.lstrip(".") for e in IMG_EXTENSIONS[:4])
    return (
        f"expected the ImageFolder layout:\n  {root}/train/<class>/<image>.({exts}|...)\n"
        f"  {root}/val/<class>/<image>.({exts}|...)"
    )


def check_folder_root(root: str | Path, split: str) -> Path:
    """Check that ``<root>/<split>`` exists and holds class folders; return it.

    Raises:
        DatasetLayoutError: the root or split folder is missing, or has no class folders.
    """
    if not str(root):
        raise DatasetLayoutError(f"data.root is empty: set data.root=/path/to/dataset; {expected_layout('<root>')}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset root '{root}' does not exist or is not a folder; {expected_layout(root)}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetLayoutError(f"dataset split folder '{split_dir}' does not exist; {expected_layout(root)}")
    if not any(p.is_dir() for p in split_dir.iterdir()):
        raise DatasetLayoutError(f"dataset split folder '{split_dir}' has no class folders; {expected_layout(root)}")
    return split_dir


UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)  # what Pillow raises for a file it cannot read


def on_unreadable(path: str, err: Exception, on_corrupt: str, warned: set[str]) -> None:
    """Act on an unreadable image as ``on_corrupt`` says: ``fail`` raises :class:`CorruptImageError` naming the
    file; ``skip`` logs a warning once per file and process (``warned`` holds the files warned of), not per epoch.
    """
    if on_corrupt == "fail":
        raise CorruptImageError(f"cannot read image '{path}': {err} (set data.on_corrupt=skip)") from err
    if path not in warned:
        warned.add(path)
        logger.warning("skipping unreadable image '%s': %s", path, err)


def load_rgb(path: str) -> Image.Image:
    """Open and fully decode an image as RGB (``convert`` forces the decode, so truncation fails here)."""
    with open(path, "rb") as f, Image.open(f) as img:
        return img.convert("RGB")


class ImageFolderDataset(ImageFolder):
    """torchvision's ImageFolder with corrupt-image handling, an optional subset and a fingerprint.

    Args:
        root: the dataset root (holding ``train/`` and ``val/``).
        split: ``train`` or ``val``.
        transform: applied to the PIL image.
        on_corrupt: ``skip`` (substitute the next readable image, warn, flag) or ``fail``.
        max_images: keep a fixed, seeded random subset of this many images (0: all).
        classes: keep only these class folders (``data.subset``); labels are their indices in sorted order.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
        on_corrupt: str = "skip",
        max_images: int = 0,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.only_classes = tuple(classes) if classes else None  # read by find_classes, called by ImageFolder
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"data.on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
        split_dir = check_folder_root(root, split)
        try:
            super().__init__(str(split_dir), transform=transform, loader=load_rgb)
        except FileNotFoundError as err:  # torchvision: a class folder without images
            raise DatasetLayoutError(f"{err}; {expected_layout(Path(root))}") from None
        if max_images and max_images < len(self.samples):
            keep = np.sort(np.random.default_rng(0).permutation(len(self.samples))[:max_images])
            self.samples = [self.samples[i] for i in keep]
            self.imgs = self.samples
            self.targets = [s[1] for s in self.samples]
        self.dataset_root = Path(root)
        self.data_root = str(root)  # what the manifest records (``self.root`` is torchvision's split folder)
        self.split = split
        self.on_corrupt = on_corrupt
        self._warned: set[str] = set()

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        """The class folders of ``directory``, only those of ``classes`` when given (all of them must exist)."""
        names, _ = super().find_classes(directory)
        if self.only_classes is None:
            return names, {name: i for i, name in enumerate(names)}
        missing = sorted(set(self.only_classes) - set(names))
        if missing:
            raise DatasetLayoutError(f"{len(missing)} of the {len(self.only_classes)} classes of data.subset are not "
                                     f"folders of {directory} (first: {', '.join(missing[:3])}): point data.root "
                                     "at a full ImageNet-1k root")
        kept = sorted(self.only_classes)
        return kept, {name: i for i, name in enumerate(kept)}

    def _read(self, index: int) -> tuple[Any, int] | None:
        """The transformed sample at ``index``, or None when its file cannot be read."""
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except UNREADABLE as err:
            on_unreadable(path, err, self.on_corrupt, self._warned)
            return None
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        """``(image, label, corrupt)``; a corrupt file is replaced by the next readable one (corrupt=1)."""
        for offset in range(MAX_CONSECUTIVE_CORRUPT):
            sample = self._read((index + offset) % len(self.samples))
            if sample is not None:
                return sample[0], sample[1], int(offset > 0)
        raise CorruptImageError(
            f"{MAX_CONSECUTIVE_CORRUPT} unreadable images in a row from '{self.samples[index][0]}': "
            f"is '{self.root}' a valid image folder?"
        )

    def fingerprint(self) -> str:
        """SHA-256 of the sorted (path relative to the dataset root, size in bytes) list."""
        return fingerprint_files(self.dataset_root, [Path(p) for p, _ in self.samples])
