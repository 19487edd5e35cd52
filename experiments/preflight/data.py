"""The data a preflight reads when the user gives none: real JPEG files of the datasets' sizes, generated once.

- **ImageNet-like**: an ImageFolder root (``train/<class>/``, ``val/<class>/``) of JPEGs of 500x375, 375x500
  and 500x333 px (ImageNet's most common sizes; quality 90, a colour gradient plus noise and shapes so that
  decoding, RandomResizedCrop, RandAugment and random erasing all work on real pixels).
- **COCO-like**: the built-in detection generator (:mod:`mixmim.transfer.tiny_coco`) at 640x480 px in JPEG,
  with COCO's layout, boxes and polygon masks.

Both are written under the preflight folder (``<output>/<experiment>/_preflight/data/``) once: a marker file
records what was generated, and a second preflight reuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mixmim.runs.rundir import atomic_write_json, read_json

IMAGE_SIZES = ((500, 375), (375, 500), (500, 333))  # (width, height) px, ImageNet's most common
COCO_SIZE = (640, 480)  # (width, height) px, COCO's most common
MARKER = "preflight-data.json"


def _image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A JPEG-able RGB image: a colour gradient, noise and a few filled shapes."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, width)[None, :, None]
    pixels = c0 * (1 - t) + c1 * t + rng.normal(0, 20, (height, width, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
        side = rng.uniform(0.1, 0.3) * min(width, height)
        draw.ellipse((x0, y0, x0 + side, y0 + side), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def imagenet_like(root: Path, classes: int = 4, train_images: int = 16, val_images: int = 8) -> Path:
    """An ImageFolder root of JPEGs (``train_images`` and ``val_images`` spread over ``classes``); reused when its
    marker records the same counts.

    Returns:
        ``root``, holding ``train/`` and ``val/``.
    """
    spec = {"kind": "imagenet-like", "classes": classes, "train": train_images, "val": val_images,
            "sizes": [list(s) for s in IMAGE_SIZES]}  # fmt: skip
    if _marked(root, spec):
        return root
    rng = np.random.default_rng(0)
    for split, count in (("train", train_images), ("val", val_images)):
        for i in range(count):
            folder = root / split / f"class{i % classes:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            width, height = IMAGE_SIZES[i % len(IMAGE_SIZES)]
            _image(rng, width, height).save(folder / f"{split}_{i:06d}.JPEG", quality=90)
    atomic_write_json(root / MARKER, spec)
    return root


def coco_like(root: Path, train_images: int = 8, val_images: int = 4) -> Path:
    """A COCO root (``annotations/``, ``train2017/``, ``val2017/``) of 640x480 JPEGs with boxes and masks."""
    from mixmim.transfer.tiny_coco import TinyCocoSpec, generate_tiny_coco

    width, height = COCO_SIZE
    spec = TinyCocoSpec(num_train=train_images, num_val=val_images, size=width, height=height,
                        min_object=40, max_object=240, image_format="jpg")  # fmt: skip
    return generate_tiny_coco(root, spec)


def _marked(root: Path, spec: dict) -> bool:
    marker = root / MARKER
    return marker.is_file() and read_json(marker) == spec
