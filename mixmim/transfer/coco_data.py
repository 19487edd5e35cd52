"""COCO-format data: the layout of a root, checks that fail early with clear messages, a torch dataset.

Layout (COCO 2017): ``<root>/annotations/instances_{train,val}2017.json`` and images in
``<root>/{train,val}2017/``. :func:`check_coco_split` runs before any training: a missing or malformed
annotation file, or images it lists that are not on disk, raise :class:`CocoDataError` naming the file
and what is wrong.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
REQUIRED_IMAGE_KEYS = ("id", "file_name", "height", "width")
REQUIRED_ANN_KEYS = ("id", "image_id", "category_id", "bbox")


class CocoDataError(ValueError):
    """A COCO annotation file or its images are unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class CocoSplit:
    """One split: its annotation file and image folder."""

    name: str
    ann_file: Path
    image_dir: Path


def coco_splits(root: str | Path) -> dict[str, CocoSplit]:
    """The train and val splits of a COCO root (2017 names)."""
    root = Path(root)
    return {s: CocoSplit(s, root / "annotations" / f"instances_{s}2017.json", root / f"{s}2017") for s in SPLITS}


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise CocoDataError(f"COCO annotation file {path} does not exist (expected <coco.root>/annotations/"
                            "instances_{train,val}2017.json; leave coco.root empty for the built-in dataset)")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise CocoDataError(f"COCO annotation file {path} is not valid JSON: {err.msg} at line {err.lineno} "
                            f"column {err.colno}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CocoDataError(f"COCO annotation file {path} cannot be read: {err}") from None


def _check_structure(path: Path, data: Any) -> None:
    """Top-level lists and the keys every image and annotation needs."""
    if not isinstance(data, dict):
        raise CocoDataError(f"COCO annotation file {path} holds a {type(data).__name__}, not an object with "
                            "'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoDataError(f"COCO annotation file {path} has no '{key}' list")
    if not data["images"]:
        raise CocoDataError(f"COCO annotation file {path} lists no images")
    for kind, items, required in (("image", data["images"], REQUIRED_IMAGE_KEYS),
                                  ("annotation", data["annotations"], REQUIRED_ANN_KEYS)):
        for i, item in enumerate(items):
            missing = [k for k in required if not isinstance(item, dict) or k not in item]
            if missing:
                raise CocoDataError(f"COCO annotation file {path}: {kind} #{i} lacks {missing}")
    image_ids = {img["id"] for img in data["images"]}
    category_ids = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    for ann in data["annotations"]:
        if ann["image_id"] not in image_ids:
            raise CocoDataError(f"COCO annotation file {path}: annotation {ann['id']} refers to image "
                                f"{ann['image_id']}, which is not in 'images'")
        if ann["category_id"] not in category_ids:
            raise CocoDataError(f"COCO annotation file {path}: annotation {ann['id']} has category "
                                f"{ann['category_id']}, which is not in 'categories'")


def _check_images(path: Path, image_dir: Path, images: list[dict[str, Any]]) -> None:
    if not image_dir.is_dir():
        raise CocoDataError(f"the images of COCO annotation file {path} should be in {image_dir}, which does "
                            "not exist")
    on_disk = set(os.listdir(image_dir))  # one listing, fast even for COCO's 118k images
    missing = [img["file_name"] for img in images if img["file_name"] not in on_disk]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CocoDataError(f"{len(missing)} of {len(images)} images listed in COCO annotation file {path} are "
                            f"missing from {image_dir}: {shown}")


def check_coco_split(split: CocoSplit) -> dict[str, int]:
    """Validate one split (see the module docstring); returns counts of images, annotations, categories.

    Raises:
        CocoDataError: the file is missing, malformed, or images it lists are missing.
    """
    data = _load_json(split.ann_file)
    _check_structure(split.ann_file, data)
    _check_images(split.ann_file, split.image_dir, data["images"])
    return {"images": len(data["images"]), "annotations": len(data["annotations"]),
            "categories": len(data["categories"])}


def load_coco(ann_file: str | Path) -> COCO:
    """pycocotools' COCO index, its print-outs sent to the log."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        coco = COCO(str(ann_file))
    log.debug(buffer.getvalue())
    return coco


class CocoDetectionDataset(Dataset):
    """Images and Mask R-CNN targets of one split, for torchvision's detection models.

    A sample is ``(image [3, H, W] float in [0, 1], target)`` with ``boxes`` [N, 4] (x1, y1, x2, y2, px),
    ``labels`` [N] (contiguous 1..K in the order of sorted category ids), ``masks`` [N, H, W] uint8 and
    ``image_id``. Crowd annotations are left out; ``train=True`` also leaves out images without objects.
    """

    def __init__(self, split: CocoSplit, train: bool):
        self.split = split
        self.coco = load_coco(split.ann_file)
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if self._annotations(i)]
        self.image_ids = ids

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False))
        return [a for a in anns if a["bbox"][2] > 1 and a["bbox"][3] > 1]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        info = self.coco.loadImgs(image_id)[0]
        with Image.open(self.split.image_dir / info["file_name"]) as img:
            image = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
        anns = self._annotations(image_id)
        h, w = image.shape[1:]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)  # x1, y1, x2, y2
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": torch.tensor(image_id),
        }
        return image, target
