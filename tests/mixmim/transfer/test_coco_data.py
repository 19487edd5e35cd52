"""The generated COCO-format dataset, and bad annotation files failing at start with clear messages."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from pycocotools import mask as mask_utils

from mixmim.config import RunConfig, apply_overrides
from mixmim.transfer.coco_data import CocoDataError, CocoDetectionDataset, check_coco_split, coco_splits
from mixmim.transfer.recipes import coco_debug_overrides
from mixmim.transfer.stage import run_coco
from mixmim.transfer.tiny_coco import TinyCocoSpec, generate_tiny_coco

SPEC = TinyCocoSpec(num_train=6, num_val=3, size=64, min_object=8, max_object=28)


@pytest.fixture
def tiny_root(tmp_path):
    return generate_tiny_coco(tmp_path / "coco", SPEC)


def test_generated_dataset_is_valid_coco_and_deterministic(tmp_path, tiny_root):
    counts = {name: check_coco_split(split) for name, split in coco_splits(tiny_root).items()}
    assert counts["train"]["images"] == 6 and counts["val"]["images"] == 3 and counts["train"]["categories"] == 3
    other = generate_tiny_coco(tmp_path / "again", SPEC)
    for rel in ("annotations/instances_train2017.json", "train2017/000001.png", "val2017/000003.png"):
        assert (tiny_root / rel).read_bytes() == (other / rel).read_bytes(), rel
    data = json.loads((tiny_root / "annotations" / "instances_train2017.json").read_text())
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64 and ann["area"] > 0
        rle = mask_utils.frPyObjects(ann["segmentation"], 64, 64)
        assert mask_utils.area(mask_utils.merge(rle)) == pytest.approx(ann["area"])


def test_dataset_targets(tiny_root):
    dataset = CocoDetectionDataset(coco_splits(tiny_root)["train"], train=True)
    image, target = dataset[0]
    assert image.shape == (3, 64, 64) and image.min() >= 0 and image.max() <= 1
    n = len(target["labels"])
    assert n >= 1 and target["boxes"].shape == (n, 4) and target["masks"].shape == (n, 64, 64)
    assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
    assert set(target["labels"].tolist()) <= {1, 2, 3} and target["masks"].dtype == torch.uint8


def _cfg(root):
    return apply_overrides(RunConfig(), {**coco_debug_overrides(), "model.backbone": "mixmim_tiny_32",
                                         "init": "random", "coco.root": str(root)})


def test_missing_annotation_file(tmp_path, tiny_root):
    (tiny_root / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(CocoDataError, match=r"instances_val2017\.json does not exist"):
        run_coco(_cfg(tiny_root), tmp_path / "run")
    assert not (tmp_path / "run" / "coco" / "checkpoint-last.pth").exists()


def test_malformed_annotation_file(tmp_path, tiny_root):
    path = tiny_root / "annotations" / "instances_train2017.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(CocoDataError, match=r"instances_train2017\.json is not valid JSON: .* line \d+ column"):
        run_coco(_cfg(tiny_root), tmp_path / "run")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("annotations"), "has no 'annotations' list"),
    (lambda d: d["images"][0].pop("file_name"), r"image #0 lacks \['file_name'\]"),
    (lambda d: d["annotations"][0].update(category_id=99), "has category 99, which is not in 'categories'"),
    (lambda d: d.update(images=[]), "lists no images"),
])
def test_annotation_file_with_wrong_structure(tiny_root, change, message):
    path = tiny_root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CocoDataError, match=message) as err:
        check_coco_split(coco_splits(tiny_root)["train"])
    assert str(path) in str(err.value)


def test_missing_images(tmp_path, tiny_root):
    (tiny_root / "val2017" / "000002.png").unlink()
    with pytest.raises(CocoDataError, match=r"1 of 3 images listed in .*instances_val2017\.json are missing from "
                                            r".*val2017: 000002\.png"):
        run_coco(_cfg(tiny_root), tmp_path / "run")
    shutil.rmtree(tiny_root / "train2017")
    with pytest.raises(CocoDataError, match=r"should be in .*train2017, which does not exist"):
        check_coco_split(coco_splits(tiny_root)["train"])
