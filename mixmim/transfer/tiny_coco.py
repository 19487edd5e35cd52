"""The built-in detection dataset: coloured shapes on textured backgrounds, in COCO format, generated.

No download: :func:`generate_tiny_coco` draws ``train2017/`` and ``val2017/`` PNGs and writes
``annotations/instances_{train,val}2017.json`` (the COCO 2017 layout, so the same code reads it and a real
COCO root). Three categories (circle, square, triangle); 1-4 non-overlapping objects per image with polygon
masks (the polygon that is drawn is the annotation); sizes span COCO's small/medium bins at 128 px. The
output is a function of the arguments (seeded); a ``tiny_coco.json`` marker makes regeneration a no-op.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from mixmim.runs.rundir import atomic_write_json, read_json

log = logging.getLogger(__name__)

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]
MARKER = "tiny_coco.json"


@dataclass(frozen=True)
class TinyCocoSpec:
    """What to generate: image counts, side (px; ``height`` 0: square), object sizes (px), the file format
    (``png`` | ``jpg``) and the seed."""

    num_train: int = 48
    num_val: int = 16
    size: int = 128
    min_object: int = 14
    max_object: int = 56
    max_objects: int = 4
    seed: int = 0
    height: int = 0
    image_format: str = "png"

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of every image in px."""
        return (self.height or self.size, self.size)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[float]:
    """Vertices ``[x0, y0, x1, y1, ...]`` of a shape of circumradius ``r`` centred at (cx, cy)."""
    corners = {"circle": 24, "square": 4, "triangle": 3}[kind]
    pts = []
    for i in range(corners):
        a = angle + 2 * math.pi * i / corners
        pts += [cx + r * math.cos(a), cy + r * math.sin(a)]
    return pts


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[height, width, 3] uint8: a random colour gradient plus noise."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, height)[:, None, None]
    img = c0 * (1 - t) + c1 * t + rng.normal(0, 12, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_image(rng: np.random.Generator, spec: TinyCocoSpec, image_id: int, ann_start: int):
    """One image and its annotations (objects placed without overlap by rejection sampling)."""
    height, width = spec.shape
    img = Image.fromarray(_background(rng, height, width))
    draw = ImageDraw.Draw(img)
    boxes, anns = [], []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        for _attempt in range(20):
            side = float(rng.uniform(spec.min_object, spec.max_object))
            x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
            if all(x0 + side < b[0] or b[2] < x0 or y0 + side < b[1] or b[3] < y0 for b in boxes):
                break
        else:
            continue
        boxes.append((x0, y0, x0 + side, y0 + side))
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        angle = float(rng.uniform(0, 2 * math.pi))
        poly = [round(v, 2) for v in _polygon(cat["name"], x0 + side / 2, y0 + side / 2, side / 2, angle)]
        draw.polygon(poly, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        xs, ys = poly[0::2], poly[1::2]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        rle = mask_utils.frPyObjects([poly], height, width)
        anns.append({"id": ann_start + len(anns), "image_id": image_id, "category_id": cat["id"],
                     "segmentation": [poly], "bbox": [round(v, 2) for v in bbox],
                     "area": float(mask_utils.area(mask_utils.merge(rle))), "iscrowd": 0})
    return img, anns


def _write_split(root: Path, split: str, count: int, spec: TinyCocoSpec, rng: np.random.Generator) -> Path:
    folder = root / f"{split}2017"
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image_id = i + 1
        img, anns = _draw_image(rng, spec, image_id, ann_start=len(annotations) + 1)
        name = f"{image_id:06d}.{spec.image_format}"
        img.save(folder / name)
        height, width = spec.shape
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        annotations.extend(anns)
    ann_file = root / "annotations" / f"instances_{split}2017.json"
    atomic_write_json(ann_file, {"info": {"description": "mixmim-bench tiny shapes"}, "images": images,
                                 "annotations": annotations, "categories": CATEGORIES})
    return ann_file


def generate_tiny_coco(root: str | Path, spec: TinyCocoSpec | None = None) -> Path:
    """Generate the dataset under ``root`` (skipped when ``root/tiny_coco.json`` records the same spec).

    Returns:
        ``root``, a COCO root with ``annotations/``, ``train2017/`` and ``val2017/``.
    """
    spec = spec or TinyCocoSpec()
    root = Path(root)
    marker = root / MARKER
    if marker.is_file() and read_json(marker) == asdict(spec):
        return root
    rng = np.random.default_rng(spec.seed)
    counts = {}
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        ann_file = _write_split(root, split, count, spec, rng)
        counts[split] = len(json.loads(ann_file.read_text())["annotations"])
    atomic_write_json(marker, asdict(spec))
    log.info("generated the tiny COCO dataset in %s: %d/%d images, %s objects", root, spec.num_train,
             spec.num_val, counts)
    return root
