"""Pre-training images decoded on the GPU: workers read JPEG bytes and draw the crop, the device decodes.

The CPU path (:func:`~mixmim.data.transforms.pretrain_transform`) decodes with Pillow in the loader workers, then
crops, resizes, flips and normalises there. This path splits the same work:

- in the workers (:class:`EncodedImages`): the file's bytes and the crop geometry only. The geometry is drawn
  with the CPU path's own calls in its order (``RandomResizedCrop.get_params`` on the image size read from the
  JPEG header, then ``RandomHorizontalFlip``'s ``torch.rand(1) < p``) from torch's global generator, so a seeded
  worker draws the same boxes and flips as the CPU path would (``tests/mixmim/data/test_gpu_decode.py``);
- on the device (:func:`decode_batch`): one batched ``torchvision.io.decode_jpeg(device=...)`` (nvJPEG on
  CUDA), then per image the crop, the bicubic antialiased resize, the flip and the ImageNet normalisation as
  tensor ops.

The pixels are close to the CPU path's but not bitwise equal: the resize is torch's antialiased bicubic on a
float tensor, not Pillow's on uint8. Only JPEG files can take this path (``decode_jpeg``); a file of another
format is refused with its name. Timed by ``mixmim-bench bench --data`` (:mod:`mixmim.bench.data`).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_jpeg

from mixmim.data.folder import MAX_CONSECUTIVE_CORRUPT, CorruptImageError

DECODE_PATHS = ("cpu", "gpu")
CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect range (the CPU path's)


class NotJpegError(ValueError):
    """A file that ``decode_jpeg`` cannot read reached the GPU decode path."""


def draw_geometry(image: Image.Image, img_size: int, crop_min_scale: float, hflip: float) -> torch.Tensor:
    """[5] long ``(top, left, height, width, flip)`` of ``image`` (opened, not decoded), drawn as the CPU path
    draws them: the crop box, then the flip, from torch's global generator."""
    crop = T.RandomResizedCrop(img_size, scale=(crop_min_scale, 1.0), ratio=CROP_RATIO)
    top, left, height, width = crop.get_params(image, crop.scale, crop.ratio)
    flip = int(torch.rand(1) < hflip)  # RandomHorizontalFlip.forward's draw
    return torch.tensor([top, left, height, width, flip])


class EncodedImages(Dataset):
    """The samples of an ImageFolder dataset as ``(jpeg bytes [N] uint8, geometry [5] long, label, corrupt)``.

    Args:
        samples: ``(path, label)`` pairs (``ImageFolderDataset.samples``).
        img_size, crop_min_scale, hflip: the pre-training crop (as :func:`pretrain_transform`).

    A file whose header cannot be read is replaced by the next readable one (``corrupt`` = 1), as the CPU path's
    ``on_corrupt=skip``; a readable file that is not a JPEG raises :class:`NotJpegError`.
    """

    def __init__(self, samples: list[tuple[str, int]], img_size: int, crop_min_scale: float = 0.2,
                 hflip: float = 0.5):  # fmt: skip
        self.samples, self.img_size, self.crop_min_scale, self.hflip = samples, img_size, crop_min_scale, hflip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        for offset in range(MAX_CONSECUTIVE_CORRUPT):
            path, label = self.samples[(index + offset) % len(self.samples)]
            data = Path(path).read_bytes()
            try:
                image = Image.open(io.BytesIO(data))  # the header only: no decode
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
            if image.format != "JPEG":
                raise NotJpegError(f"'{path}' is {image.format}, not JPEG: the GPU decode path reads JPEG only "
                                   "(decode it on the CPU, or convert the dataset)")  # fmt: skip
            geometry = draw_geometry(image, self.img_size, self.crop_min_scale, self.hflip)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), geometry, label, int(offset > 0)
        raise CorruptImageError(f"{MAX_CONSECUTIVE_CORRUPT} unreadable images in a row from '{self.samples[index][0]}'")


def collate_encoded(batch: list[tuple]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples of :class:`EncodedImages` -> (bytes per image, geometry [B, 5], labels [B], corrupt [B])."""
    data, geometry, labels, corrupt = zip(*batch)
    return list(data), torch.stack(geometry), torch.tensor(labels), torch.tensor(corrupt)


def decode_batch(data: list[torch.Tensor], geometry: torch.Tensor, img_size: int,
                 device: torch.device | str) -> torch.Tensor:  # fmt: skip
    """JPEG bytes and their geometry [B, 5] -> normalised images [B, 3, img_size, img_size] float32 on ``device``.

    One batched ``decode_jpeg`` (RGB), then per image: crop, bicubic antialiased resize, flip; then
    ``(x / 255 - mean) / std`` over the batch.
    """
    decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    out = []
    for image, (top, left, height, width, flip) in zip(decoded, geometry.tolist()):
        crop = image[None, :, top : top + height, left : left + width].float()
        crop = F.interpolate(crop, size=(img_size, img_size), mode="bicubic", antialias=True, align_corners=False)
        out.append(crop.flip(-1) if flip else crop)
    images = torch.cat(out).clamp_(0, 255).div_(255)  # [B, 3, S, S] in [0, 1], as ToTensor's
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
