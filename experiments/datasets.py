"""Sizes of the datasets the experiments name (a leaf module: the cost projection, budgets and the benchmark read
it, torch-free)."""

from __future__ import annotations

from pathlib import Path

from mixmim.config import RunConfig

# Training images of the datasets the experiments name (folder name of data.root -> count). ImageNet-1k:
# 1,281,167 (ILSVRC-2012 train); iNaturalist 2018: 437,513, 2019: 265,213; Places205: 2,448,873; Places365-
# Standard: 1,803,460 (each dataset's paper / release notes). A folder dataset with another name is counted
# as ImageNet-1k, and the table says so.
TRAIN_IMAGES = {
    "imagenet": 1_281_167,
    "inat2018": 437_513,
    "inat2019": 265_213,
    "places205": 2_448_873,
    "places365": 1_803_460,
}
VAL_IMAGES = {"imagenet": 50_000, "inat2018": 24_426, "inat2019": 3_030, "places205": 41_000, "places365": 36_500}
DIGITS_IMAGES = (1_497, 300)  # the built-in digits data (mixmim.data.digits): train / val split
# ImageNet-100 (data.subset=imagenet100): 50 validation images per class, as every ImageNet-1k class; the training
# count is estimated as 100 classes at ImageNet-1k's mean class size (1,281,167 / 1000): the exact count is that
# of the copy read.
SUBSET_IMAGES = {"imagenet100": (128_117, 5_000)}


def dataset_images(cfg: RunConfig) -> tuple[int, int, str]:
    """Training and validation images of the run's data, and what the count assumes."""
    if cfg.data.dataset == "folder" and cfg.data.subset:
        train, val = SUBSET_IMAGES[cfg.data.subset]
        note = f"{cfg.data.subset} (training images estimated)"
    elif cfg.data.dataset == "digits":
        train, val, note = *DIGITS_IMAGES, "built-in digits"
    else:
        name = Path(cfg.data.root.rstrip("/")).name.lower() if cfg.data.root else ""
        key = name if name in TRAIN_IMAGES else "imagenet"
        train, val = TRAIN_IMAGES[key], VAL_IMAGES[key]
        note = key if name in TRAIN_IMAGES else "ImageNet-1k size assumed"
    if cfg.data.max_train_images:
        train = min(train, cfg.data.max_train_images)
    return train, val, note
