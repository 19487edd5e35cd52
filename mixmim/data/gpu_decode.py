"""Pre-training images decoded on the GPU: workers read JPEG bytes and draw the crop, the device decodes.

The CPU path (:func:`~mixmim.data.transforms.pretrain_transform`) decodes with Pillow in the loader workers, then
crops, resizes, flips and normalises there. This path splits the same work:

- in the workers (:class:`EncodedImages`): the file's bytes, the colour jitter's parameters and the crop
  geometry only. They are drawn with the CPU path's own calls in its order (``ColorJitter.get_params`` when
  ``data.color_jitter`` > 0, ``RandomResizedCrop.get_params`` on the image size read from the JPEG header, then
  ``RandomHorizontalFlip``'s ``torch.rand(1) < p``) from torch's global generator, so a seeded worker draws the
  same jitter, boxes and flips as the CPU path would (``tests/mixmim/data/test_gpu_decode.py``);
- on the device (:func:`decode_batch`): one batched ``torchvision.io.decode_jpeg(device=...)`` (nvJPEG on
  CUDA), then per image the colour jitter (torchvision's tensor kernels, on the whole image), the crop, the
  antialiased resize, the flip and the ImageNet normalisation as tensor ops.

The pixels are close to the CPU path's but not bitwise equal: the resize is torch's antialiased bicubic on a
float tensor, not Pillow's on uint8, and the colour kernels are torchvision's tensor ones, not Pillow's. Only JPEG
files can take this path (``decode_jpeg``); a file of another format is refused with its name.

Used by pre-training with ``data.decode=gpu`` (``experiments.stages.run_pretrain``): the loader's
``collate_fn`` is :meth:`EncodedImages.collate`, its batches carry an :class:`EncodedBatch`, and the Trainer
decodes it on the device inside the step (``Trainer.train_batch``), so the step's timing includes the decode and
the main process never touches pixels. The randomness is the CPU path's (drawn in the workers from the same
seeded generators), so the data order and the crops of a resumed run are the CPU path's too. Refused without a
CUDA device (:func:`check_decode_device`; ``MIXMIM_DECODE_ON_CPU=1`` lets tests and debugging run it on the
CPU). Timed by ``mixmim-bench bench --data`` (:mod:`mixmim.bench.data`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import functional as TF

from mixmim.config import CHOICES
from mixmim.data.folder import MAX_CONSECUTIVE_CORRUPT, UNREADABLE, CorruptImageError, on_unreadable
from mixmim.data.transforms import INTERPOLATIONS, resized_crop_class

DECODE_PATHS = CHOICES["data.decode"]  # declared once, on the config
CPU_OVERRIDE_ENV = "MIXMIM_DECODE_ON_CPU"  # "1": data.decode=gpu may run on a CPU device (tests, debugging)
CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range (the CPU path's)


class NotJpegError(ValueError):
    """A file that ``decode_jpeg`` cannot read reached the GPU decode path."""


class DecodeDeviceError(RuntimeError):
    """``data.decode=gpu`` on a run without a CUDA device (and without :data:`CPU_OVERRIDE_ENV`)."""


def check_decode_device(device: torch.device | str) -> None:
    """Refuse the GPU decode path on a non-CUDA ``device`` unless ``MIXMIM_DECODE_ON_CPU=1`` (tests, debugging:
    ``decode_jpeg`` also decodes on the CPU, with libjpeg instead of nvJPEG).

    Raises:
        DecodeDeviceError: naming the device and the two ways out.
    """
    device = torch.device(device)
    if device.type != "cuda" and os.environ.get(CPU_OVERRIDE_ENV) != "1":
        raise DecodeDeviceError(f"data.decode=gpu decodes JPEGs on a CUDA device, but this stage runs on {device}: "
                                f"pass --set data.decode=cpu (or set {CPU_OVERRIDE_ENV}=1 to run the GPU path's "
                                "steps on the CPU, for tests and debugging)")  # fmt: skip


def loader_collate(dataset: Dataset, device: torch.device | str) -> Callable[[list[Any]], Any] | None:
    """The ``collate_fn`` a training loader over ``dataset`` needs: :meth:`EncodedImages.collate` for the GPU
    path (after :func:`check_decode_device`), else None (torch's default)."""
    if not isinstance(dataset, EncodedImages):
        return None
    check_decode_device(device)
    return dataset.collate


def draw_geometry(image: Image.Image, img_size: int, crop_min_scale: float, hflip: float,
                  crop_kind: str = "torchvision") -> torch.Tensor:  # fmt: skip
    """[5] long ``(top, left, height, width, flip)`` of ``image`` (opened, not decoded), drawn as the CPU path
    draws them: the crop box (``crop_kind``: ``linprobe.crop``), then the flip, from torch's global generator."""
    crop = resized_crop_class(crop_kind)(img_size, scale=(crop_min_scale, 1.0), ratio=CROP_RATIO)
    top, left, height, width = crop.get_params(image, crop.scale, crop.ratio)
    flip = int(torch.rand(1) < hflip)  # RandomHorizontalFlip.forward's draw
    return torch.tensor([top, left, height, width, flip])


def draw_colour(jitter: T.ColorJitter | None) -> torch.Tensor:
    """[8] float: the order of ``jitter``'s four adjustments (a permutation of 0-3), then its brightness, contrast,
    saturation and hue factors (NaN: off), drawn by ``ColorJitter.get_params`` from torch's global generator as the
    CPU path draws them (before the crop's); [0] without jitter (no draw)."""
    if jitter is None:
        return torch.empty(0)
    order, *factors = jitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
    return torch.tensor([*order.tolist(), *(math.nan if f is None else f for f in factors)])


ADJUSTMENTS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)  # ColorJitter's 0-3


def apply_colour(image: torch.Tensor, colour: list[float]) -> torch.Tensor:
    """``ColorJitter.forward`` with the parameters :func:`draw_colour` drew: image [3, H, W] uint8 on any device,
    adjusted in the drawn order (torchvision's tensor kernels; the CPU path runs their PIL forms)."""
    order, factors = colour[:4], colour[4:]
    for fn_id in (int(i) for i in order):
        if not math.isnan(factors[fn_id]):
            image = ADJUSTMENTS[fn_id](image, factors[fn_id])
    return image


@dataclass
class EncodedBatch:
    """A batch of the GPU path as the loader yields it: JPEG bytes and crop geometry, still on the host.

    :func:`mixmim.device_copy.to_device` leaves it as it is; the Trainer decodes it in the step
    (:meth:`decode`, inside the step's timing).

    Attributes:
        data: one [N_i] uint8 tensor of file bytes per image; geometry: [B, 5] long (:func:`draw_geometry`);
        paths: the files (named when one fails to decode); img_size, interpolation: the output crop;
        colour: [B, 8] float colour jitter (:func:`draw_colour`), or [B, 0]/None: none.
    """

    data: list[torch.Tensor]
    geometry: torch.Tensor
    paths: list[str]
    img_size: int
    interpolation: str = "bicubic"
    colour: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.data)

    def decode(self, device: torch.device | str) -> torch.Tensor:
        """Normalised images [B, 3, img_size, img_size] float32 on ``device`` (:func:`decode_batch`)."""
        try:
            return decode_batch(self.data, self.geometry, self.img_size, device, self.interpolation, self.colour)
        except RuntimeError as err:  # a JPEG whose header read but whose body does not decode: name it
            for path, data in zip(self.paths, self.data):
                try:
                    decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    raise CorruptImageError(f"cannot decode '{path}' on {device}: {err} (the GPU path checks "
                                            "headers only: remove the file, or pass data.decode=cpu, which skips "
                                            "it)") from err  # fmt: skip
            raise


class EncodedImages(Dataset):
    """The samples of an ImageFolder dataset as ``(jpeg bytes [N] uint8, geometry [5] long, colour [8] or [0] float,
    label, corrupt, path)``.

    Args:
        samples: ``(path, label)`` pairs (``ImageFolderDataset.samples``).
        img_size, crop_min_scale, hflip, interpolation, color_jitter: the pre-training crop and colour jitter (as
            :func:`pretrain_transform`).
        on_corrupt: ``skip`` or ``fail`` (``data.on_corrupt``), as the CPU path's.
        source: the dataset the samples come from (``dataset_fingerprint`` reads its fingerprint through
            ``.dataset``; its ``data_root`` and ``classes`` are kept).

    A file whose header cannot be read is replaced by the next readable one (``corrupt`` = 1) with
    ``on_corrupt=skip``, or raises :class:`CorruptImageError` with ``fail``; a readable file that is not a JPEG
    raises :class:`NotJpegError`. Batch it with :meth:`collate`.
    """

    def __init__(self, samples: list[tuple[str, int]], img_size: int, crop_min_scale: float = 0.2,
                 hflip: float = 0.5, interpolation: str = "bicubic", color_jitter: float = 0.0,
                 on_corrupt: str = "skip", source: Dataset | None = None, crop: str = "torchvision"):  # fmt: skip
        resized_crop_class(crop)  # a bad name fails here, not in a worker
        self.crop = crop
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"crop interpolation {interpolation!r}: use one of {', '.join(INTERPOLATIONS)}")
        self.samples, self.img_size, self.crop_min_scale, self.hflip = samples, img_size, crop_min_scale, hflip
        self.interpolation, self.on_corrupt, self.dataset = interpolation, on_corrupt, source
        self.jitter = T.ColorJitter(color_jitter, color_jitter, color_jitter) if color_jitter > 0 else None
        self.data_root, self.root = str(getattr(source, "data_root", "")), getattr(source, "root", "")
        self.classes = list(getattr(source, "classes", []))
        self.targets = [label for _, label in samples]
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int, str]:
        for offset in range(MAX_CONSECUTIVE_CORRUPT):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                data = Path(path).read_bytes()
                image = Image.open(io.BytesIO(data))  # the header only: no decode
            except UNREADABLE as err:
                on_unreadable(path, err, self.on_corrupt, self._warned)
                continue
            if image.format != "JPEG":
                raise NotJpegError(f"'{path}' is {image.format}, not JPEG: the GPU decode path reads JPEG only "
                                   "(pass data.decode=cpu, or convert the dataset)")  # fmt: skip
            colour = draw_colour(self.jitter)  # the CPU path jitters first, then crops
            geometry = draw_geometry(image, self.img_size, self.crop_min_scale, self.hflip, self.crop)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), geometry, colour, label, int(offset > 0), path
        raise CorruptImageError(f"{MAX_CONSECUTIVE_CORRUPT} unreadable images in a row from '{self.samples[index][0]}'")

    def collate(self, batch: list[tuple]) -> tuple[EncodedBatch, torch.Tensor, torch.Tensor]:
        """Samples -> ``(EncodedBatch, labels [B], corrupt [B])``: the loader's ``collate_fn`` (in the workers)."""
        data, geometry, colour, labels, corrupt, paths = zip(*batch)
        encoded = EncodedBatch(list(data), torch.stack(geometry), list(paths), self.img_size, self.interpolation,
                               torch.stack(colour))  # fmt: skip
        return encoded, torch.tensor(labels), torch.tensor(corrupt)


def decode_batch(data: list[torch.Tensor], geometry: torch.Tensor, img_size: int, device: torch.device | str,
                 interpolation: str = "bicubic", colour: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """JPEG bytes and their geometry [B, 5] -> normalised images [B, 3, img_size, img_size] float32 on ``device``.

    One batched ``decode_jpeg`` (RGB), then per image: the colour jitter ``colour`` [B, 8] (:func:`apply_colour`, on
    the whole image as the CPU path: contrast reads its mean), crop, antialiased resize (``interpolation``: bicubic
    or bilinear), flip; then ``(x / 255 - mean) / std`` over the batch.
    """
    decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    colours = colour.tolist() if colour is not None and colour.numel() else [None] * len(decoded)
    out = []
    for image, (top, left, height, width, flip), jitter in zip(decoded, geometry.tolist(), colours):
        image = apply_colour(image, jitter) if jitter else image
        crop = image[None, :, top : top + height, left : left + width].float()
        crop = F.interpolate(crop, size=(img_size, img_size), mode=interpolation, antialias=True, align_corners=False)
        out.append(crop.flip(-1) if flip else crop)
    images = torch.cat(out).clamp_(0, 255).div_(255)  # [B, 3, S, S] in [0, 1], as ToTensor's
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
