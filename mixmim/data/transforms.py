"""Image transforms: pre-training, fine-tuning (timm) and evaluation, as the official recipes.

- Pre-training (MAE/MixMIM): ``RandomResizedCrop(img, scale=(0.2, 1), bicubic)`` + horizontal flip +
  ImageNet normalisation. No colour augmentation.
- Fine-tuning (MAE/MixMIM, through timm's ``create_transform``): RandomResizedCrop (timm's default scale
  0.08-1), flip, RandAugment ``rand-m9-mstd0.5-inc1``, normalisation, random erasing 0.25 (pixel mode,
  one box). Mixup/CutMix is applied per batch: :mod:`mixmim.data.mixup`.
- Evaluation: resize the short side to ``floor(img / 0.875)`` (256 for 224 px) and center-crop ``img``,
  bicubic.

The built-in digits (32 px) use the same pre-training crop (``data.crop_min_scale=0.2``); see
:mod:`mixmim.data.digits` for the measurement (milder crops were not reliably better).

All random transforms draw from torch's global generator (torchvision) and Python's ``random`` (timm's
RandAugment), so a checkpoint that restores those states restores the augmentation stream exactly
(``num_workers=0``; with workers, each worker is seeded from the DataLoader's generator).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from mixmim.config import FinetuneConfig

EVAL_CROP_PCT = 0.875  # 224 / 256, up to 224 px; above: 1.0 (eval_crop_pct)

Transform = Callable[..., torch.Tensor]


INTERPOLATIONS = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}
CROPS = ("torchvision", "mae")  # linprobe.crop


def mae_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, ...]:
    """MAE's crop box (facebookresearch/mae ``util/crop.py``, after BYOL's TF code): one draw, no retry loop.

    Area fraction ``s ~ U(scale)``, aspect ``a = exp(U(log ratio))`` in float32 (torch's global generator, in that
    order),
    ``w = round(sqrt(s * area * a))`` and ``h = round(sqrt(s * area / a))`` clamped to the image, then the top
    and left corners uniform over the positions that fit (``randint``, top first).

    Returns:
        ``(top, left, h, w)`` in px, torchvision's ``get_params`` order.
    """
    area_fraction = torch.empty(1).uniform_(scale[0], scale[1]).item()
    low, high = torch.tensor(ratio, dtype=torch.float32).log().tolist()  # float32 as the official, then exp in float32
    aspect = torch.empty(1).uniform_(low, high).exp().item()
    target = width * height * area_fraction
    w = min(int(round(math.sqrt(target * aspect))), width)
    h = min(int(round(math.sqrt(target / aspect))), height)
    top = int(torch.randint(0, height - h + 1, size=(1,)).item())
    left = int(torch.randint(0, width - w + 1, size=(1,)).item())
    return top, left, h, w


class MAERandomResizedCrop(T.RandomResizedCrop):
    """torchvision's RandomResizedCrop with MAE's box (:func:`mae_crop_box`) instead of the 10-try loop."""

    @staticmethod
    def get_params(img: torch.Tensor | Image.Image, scale: list[float], ratio: list[float]) -> tuple[int, ...]:
        width, height = TF.get_image_size(img)
        return mae_crop_box(width, height, tuple(scale), tuple(ratio))


def resized_crop_class(crop: str) -> type[T.RandomResizedCrop]:
    """The random resized crop named by ``crop`` (:data:`CROPS`): torchvision's, or MAE's one-draw crop."""
    if crop not in CROPS:
        raise ValueError(f"crop {crop!r}: use one of {', '.join(CROPS)}")
    return MAERandomResizedCrop if crop == "mae" else T.RandomResizedCrop


def pretrain_transform(img_size: int, crop_min_scale: float = 0.2, hflip: float = 0.5, interpolation: str = "bicubic",
                       color_jitter: float = 0.0, crop: str = "torchvision") -> Transform:  # fmt: skip
    """Official pre-training augmentation: random resized crop (area ``crop_min_scale``-1), flip, normalise.

    Args:
        img_size: output side in px.
        crop_min_scale: lower bound of the crop's area fraction (official 0.2; ``data.crop_min_scale``).
        hflip: probability of a horizontal flip.
        interpolation: of the crop's resize, ``bicubic`` (MixMIM, MAE, BEiT) or ``bilinear`` (SimMIM's
            torchvision default; ``data.crop_interpolation``).
        color_jitter: ``ColorJitter(c, c, c)`` first, as BEiT's pre-training (0.4); 0: none
            (``data.color_jitter``).
        crop: ``torchvision`` (RandomResizedCrop) or ``mae`` (:class:`MAERandomResizedCrop`: MAE's linear
            probe, ``linprobe.crop``).

    Returns:
        PIL image -> normalised tensor ``[3, img_size, img_size]``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"crop interpolation {interpolation!r}: use one of {', '.join(INTERPOLATIONS)}")
    if crop not in CROPS:
        raise ValueError(f"crop {crop!r}: use one of {', '.join(CROPS)}")
    jitter = [T.ColorJitter(color_jitter, color_jitter, color_jitter)] if color_jitter > 0 else []
    resized_crop = resized_crop_class(crop)
    return T.Compose(
        [
            *jitter,
            resized_crop(img_size, scale=(crop_min_scale, 1.0), interpolation=INTERPOLATIONS[interpolation]),
            T.RandomHorizontalFlip(hflip),
            T.ToTensor(),
            T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        ]
    )


def finetune_transform(img_size: int, cfg: FinetuneConfig) -> Transform:
    """Official fine-tuning augmentation through timm: RandomResizedCrop (area ``cfg.crop_min_scale``-1),
    RandAugment ``cfg.randaug``, random erasing ``cfg.reprob``.

    Returns:
        PIL image -> normalised tensor ``[3, img_size, img_size]``.
    """
    transform = create_transform(
        input_size=img_size,
        is_training=True,
        scale=(cfg.crop_min_scale, 1.0),
        color_jitter=None,
        auto_augment=cfg.randaug or None,
        interpolation="bicubic",
        re_prob=cfg.reprob,
        re_mode="pixel",
        re_count=1,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )
    return _with_zero_bit_posterize(transform)


def posterize_keep_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize op, with 0 bits giving a black image as Pillow < 13 did (Pillow 13 rejects 0 bits,
    which ``rand-m9-mstd0.5-inc1`` asks for when the magnitude noise reaches the top level)."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _with_zero_bit_posterize(transform: Transform) -> Transform:
    """Swap the posterize function of this transform's RandAugment ops only (no global patch of timm)."""
    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []):
            if getattr(op, "name", "").startswith("Posterize"):
                op.aug_fn = posterize_keep_bits
    return transform


def eval_crop_pct(img_size: int) -> float:
    """The official evaluation crop fraction (MixMIM, MAE ``util/datasets.build_transform``): 224 / 256 up to
    224 px, 1.0 above (Resize 384, CenterCrop 384). BEiT switches at 384 px (the same for 384 px, the only larger
    size its recipes use); SimMIM keeps 224 / 256 at every size."""
    return EVAL_CROP_PCT if img_size <= 224 else 1.0


def eval_transform(img_size: int, crop_pct: float | None = None) -> Transform:
    """Evaluation: resize the short side to ``floor(img_size / crop_pct)``, center-crop ``img_size``, bicubic;
    ``crop_pct`` defaults to :func:`eval_crop_pct`.

    Returns:
        PIL image -> normalised tensor ``[3, img_size, img_size]``.
    """
    return create_transform(
        input_size=img_size,
        is_training=False,
        interpolation="bicubic",
        crop_pct=eval_crop_pct(img_size) if crop_pct is None else crop_pct,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
    )
