"""The built-in dataset: scikit-learn's digits as RGB images, a fixed split, the shared transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mixmim.config import DataConfig, FinetuneConfig
from mixmim.data import (
    DigitsDataset,
    build_dataset,
    build_mixup,
    eval_transform,
    finetune_criterion,
    finetune_transform,
    pretrain_transform,
)


def test_split_sizes_labels_and_images():
    train, val = build_dataset(DataConfig(), "train"), build_dataset(DataConfig(), "val")
    assert (len(train), len(val)) == (1497, 300)
    image, label, corrupt = train[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (32, 32)
    assert 0 <= label < 10 and corrupt == 0
    assert sorted(set(val.targets)) == list(range(10)) and min(np.bincount(val.targets)) >= 29  # stratified
    assert train.classes == [str(d) for d in range(10)]
    assert train.data_root == "builtin:sklearn-digits"


def test_split_is_fixed_and_disjoint():
    a, b = DigitsDataset("train"), DigitsDataset("train")
    assert np.array_equal(a.images, b.images) and a.targets == b.targets and a.fingerprint() == b.fingerprint()
    val = DigitsDataset("val")
    train_rows = {row.tobytes() for row in DigitsDataset("train", size=8).images}
    overlap = sum(row.tobytes() in train_rows for row in DigitsDataset("val", size=8).images)
    assert overlap <= 3  # only exact duplicates that the raw digits themselves contain
    assert val.fingerprint() != a.fingerprint()


def test_size_and_subset_are_configurable():
    small = build_dataset(DataConfig(digits_size=16, max_train_images=100), "train")
    assert len(small) == 100 and small[0][0].size == (16, 16)
    assert len(build_dataset(DataConfig(max_train_images=100), "val")) == 300  # only the train split
    again = build_dataset(DataConfig(digits_size=16, max_train_images=100), "train")
    assert small.targets == again.targets


def test_digits_are_bright_strokes_on_black():
    image = np.asarray(DigitsDataset("train")[0][0])  # [32, 32, 3] uint8
    assert image.max() > 200 and image[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("kind", ["pretrain", "finetune", "eval"])
def test_transforms_give_normalised_tensors(kind):
    transform = {
        "pretrain": pretrain_transform(32),
        "finetune": finetune_transform(32, FinetuneConfig()),
        "eval": eval_transform(32),
    }[kind]
    x, _, _ = build_dataset(DataConfig(), "train", transform)[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert x.min() < -1.5  # ImageNet normalisation maps black to about -2


def test_eval_transform_resizes_by_crop_pct():
    names = [type(t).__name__ for t in eval_transform(224).transforms]
    assert names[:2] == ["Resize", "CenterCrop"]
    assert eval_transform(224).transforms[0].size == 256
    assert eval_transform(32).transforms[0].size == 36


def test_pretrain_transform_is_the_official_crop():
    crop = pretrain_transform(224).transforms[0]
    assert crop.scale == (0.2, 1.0) and crop.interpolation.value == "bicubic"


def test_mixup_and_criterion_follow_the_config():
    mixup = build_mixup(FinetuneConfig(), num_classes=10)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.label_smoothing) == (0.8, 1.0, 0.1)
    images, targets = mixup(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    assert targets.shape == (4, 10) and torch.allclose(targets.sum(1), torch.ones(4))
    assert type(finetune_criterion(FinetuneConfig())).__name__ == "SoftTargetCrossEntropy"
    assert build_mixup(FinetuneConfig(mixup=0, cutmix=0), 10) is None
    assert type(finetune_criterion(FinetuneConfig(mixup=0, cutmix=0))).__name__ == "LabelSmoothingCrossEntropy"


def test_finetune_randaug_survives_zero_bit_posterize():
    """rand-m9-mstd0.5-inc1 can ask posterize for 0 bits; Pillow 13 rejects that, we give black as Pillow < 13."""
    import random

    from PIL import Image

    from mixmim.config import FinetuneConfig
    from mixmim.data.transforms import finetune_transform, posterize_keep_bits

    img = Image.new("RGB", (32, 32), (200, 120, 40))
    assert posterize_keep_bits(img, 0).getpixel((0, 0)) == (0, 0, 0)
    assert posterize_keep_bits(img, 8) is img
    transform = finetune_transform(32, FinetuneConfig())
    random.seed(0)
    for _ in range(3000):  # ~4 in 3000 draws hit 0 bits before the fix
        transform(img)


def test_eval_crop_is_whole_above_224_px():
    """MixMIM/MAE build_transform: crop_pct 224/256 up to 224 px, 1.0 above (Resize 384, CenterCrop 384)."""
    assert eval_transform(384).transforms[0].size == 384
    assert eval_transform(224).transforms[0].size == 256


def test_pretrain_transform_colour_jitter_first_and_bilinear_crop():
    """BEiT's ColorJitter(0.4, 0.4, 0.4) before the crop; SimMIM's bilinear crop; the default unchanged."""
    from torchvision import transforms as T

    names = [type(t).__name__ for t in pretrain_transform(32).transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    jitter = pretrain_transform(32, color_jitter=0.4).transforms[0]
    assert isinstance(jitter, T.ColorJitter) and jitter.brightness == (0.6, 1.4)
    crop = pretrain_transform(32, interpolation="bilinear").transforms[0]
    assert crop.interpolation == T.InterpolationMode.BILINEAR
    with pytest.raises(ValueError, match="bicubic"):
        pretrain_transform(32, interpolation="lanczos")
