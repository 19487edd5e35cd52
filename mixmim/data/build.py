"""``build_dataset``: one entry point for the built-in digits and ImageFolder datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from mixmim.config import DataConfig
from mixmim.data.digits import DIGITS_ROOT, DigitsDataset
from mixmim.data.folder import SPLITS, ImageFolderDataset
from mixmim.data.gpu_decode import EncodedImages
from mixmim.data.subsets import subset_classes
from mixmim.data.transforms import pretrain_transform

DATASETS = ("digits", "folder")


def build_dataset(cfg: DataConfig, split: str, transform: Callable[..., Any] | None = None) -> Dataset:
    """The ``split`` (``train`` | ``val``) of the dataset ``cfg.dataset`` with ``transform`` applied.

    ``cfg.max_train_images`` limits the train split to a fixed random subset. Samples are
    ``(image, label, corrupt)``; the dataset has ``classes``, ``targets``, ``data_root`` and ``fingerprint()``.

    Raises:
        ValueError: unknown dataset, split or ``on_corrupt`` value.
        mixmim.data.folder.DatasetLayoutError: a missing or empty ``cfg.root`` (the message names it).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    max_images = cfg.max_train_images if split == "train" else 0
    if cfg.dataset == "digits":
        return DigitsDataset(split, transform=transform, size=cfg.digits_size, max_images=max_images)
    if cfg.dataset == "folder":
        classes = subset_classes(cfg.subset) if cfg.subset else None
        return ImageFolderDataset(cfg.root, split, transform, on_corrupt=cfg.on_corrupt, max_images=max_images,
                                  classes=classes)
    raise ValueError(f"data.dataset must be one of {DATASETS}, got {cfg.dataset!r}")


def build_crop_set(cfg: DataConfig, img_size: int, crop_min_scale: float, interpolation: str = "bicubic",
                   color_jitter: float = 0.0, crop: str = "torchvision") -> Dataset:  # fmt: skip
    """The ``train`` split under the pre-training crop (pre-training; the linear probe, which trains with it),
    decoded where ``cfg.decode`` says.

    ``cpu``: samples ``(image [3, img_size, img_size], label, corrupt)``, decoded and augmented in the workers
    (:func:`~mixmim.data.transforms.pretrain_transform`). ``gpu``: the same folder's samples as JPEG bytes and
    crop geometry (:class:`~mixmim.data.gpu_decode.EncodedImages`), decoded on the device in the step.
    ``crop``: the resized crop's kind (``linprobe.crop``: ``torchvision`` | ``mae``), on both paths.
    """
    if cfg.decode == "gpu":
        folder = build_dataset(cfg, "train")  # the same samples (subset, max_train_images), untransformed
        return EncodedImages(folder.samples, img_size, crop_min_scale, interpolation=interpolation, crop=crop,
                             color_jitter=color_jitter, on_corrupt=cfg.on_corrupt, source=folder)  # fmt: skip
    transform = pretrain_transform(img_size, crop_min_scale, interpolation=interpolation, color_jitter=color_jitter,
                                   crop=crop)  # fmt: skip
    return build_dataset(cfg, "train", transform)


def build_pretrain_set(cfg: DataConfig, img_size: int) -> Dataset:
    """The pre-training split: :func:`build_crop_set` with ``cfg``'s crop (scale, interpolation, colour jitter)."""
    return build_crop_set(cfg, img_size, cfg.crop_min_scale, cfg.crop_interpolation, cfg.color_jitter)


def dataset_root(cfg: DataConfig) -> str:
    """What the manifest records as the data root (the built-in dataset has a pseudo-path)."""
    return cfg.root if cfg.dataset == "folder" else DIGITS_ROOT
