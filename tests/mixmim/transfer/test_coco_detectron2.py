"""The detectron2 engine (skipped where detectron2 is not installed, as in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

detectron2 = pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from mixmim.config import RunConfig, apply_overrides  # noqa: E402
from mixmim.runs.rundir import read_json  # noqa: E402
from mixmim.transfer import coco_debug_overrides, run_coco  # noqa: E402
from mixmim.transfer.detectron2.backbone import MixMIMBackbone  # noqa: E402
from mixmim.transfer.detectron2.recipe import mask_rcnn_recipe  # noqa: E402

CONFIGS = sorted((Path(__file__).parents[3] / "mixmim/transfer/detectron2/configs").glob("mask_rcnn_*.py"))


def test_backbone_contract():
    backbone = MixMIMBackbone("mixmim_small_64", img_size=64, square_pad=64)
    shapes = backbone.output_shape()
    assert list(shapes) == ["stage1", "stage2", "stage3", "stage4"]
    assert [s.stride for s in shapes.values()] == [2, 4, 8, 16] and shapes["stage4"].channels == 256
    assert backbone.size_divisibility == 16
    assert backbone.padding_constraints == {"size_divisibility": 16, "square_size": 64}
    out = backbone(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {"stage1": (32, 48), "stage2": (16, 24),
                                                                 "stage3": (8, 12), "stage4": (4, 6)}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_lazyconfig_files_follow_the_vitdet_recipe(path):
    cfg = LazyConfig.load(str(path))
    epochs = 100 if "100ep" in path.stem else 50
    assert cfg.train.max_iter == {100: 184_375, 50: 92_187}[epochs]  # ViTDet's 184375 and 184375 // 2
    assert cfg.train.amp.enabled and cfg.dataloader.train.total_batch_size == 64
    assert cfg.optimizer.lr == pytest.approx(1e-4) and cfg.optimizer.weight_decay == 0.1
    assert [a._target_.__name__ for a in cfg.dataloader.train.mapper.augmentations] == [
        "RandomFlip", "ResizeScale", "FixedSizeCrop"]
    assert cfg.lr_multiplier.scheduler.milestones == [round(cfg.train.max_iter * f) for f in (8 / 9, 26 / 27)]
    body = cfg.model.backbone if "vit" in path.stem else cfg.model.backbone.bottom_up
    assert body._target_ is MixMIMBackbone and body.img_size == 1024


@pytest.mark.parametrize("backbone", ["mixmim_tiny_32", "mixmim_vit_tiny_patch4_32"])
def test_small_model_trains_one_step(backbone):
    torch.manual_seed(0)
    nodes = mask_rcnn_recipe(backbone=backbone, img_size=64, batch_size=2, num_classes=3, compact=True,
                             device="cpu", num_train_images=4, epochs=1)
    model = instantiate(nodes["model"])
    inst = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[4.0, 4.0, 30.0, 30.0]])),
                     gt_classes=torch.tensor([1]))
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[:, 4:30, 4:30] = True
    inst.gt_masks = BitMasks(mask)
    batch = [{"image": torch.randint(0, 255, (3, 64, 64)).float(), "instances": inst}] * 2
    with EventStorage():
        losses = model(batch)
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    sum(losses.values()).backward()
    nodes["optimizer"].params.model = model
    optimizer = instantiate(nodes["optimizer"])
    scales = sorted({round(g["lr"] / 1e-4, 6) for g in optimizer.param_groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.7**5)  # 4 blocks: patch embedding at 0.7^5


def test_score_threshold_reaches_the_box_predictor():
    nodes = mask_rcnn_recipe(backbone="mixmim_tiny_32", img_size=64, batch_size=2, num_classes=3, compact=True,
                             device="cpu", num_train_images=4, epochs=1, score_thresh=0.001)
    assert instantiate(nodes["model"]).roi_heads.box_predictor.test_score_thresh == 0.001
    assert coco_debug_overrides()["coco.score_thresh"] == 0.001 and coco_debug_overrides()["coco.lsj"] is False
    flip_resize = mask_rcnn_recipe(backbone="mixmim_tiny_32", img_size=64, device="cpu", lsj=False)
    assert [a._target_.__name__ for a in flip_resize["dataloader"].train.mapper.augmentations] == [
        "RandomFlip", "ResizeShortestEdge"]


@pytest.mark.slow
def test_detectron2_debug_variant_end_to_end_measures_a_nonzero_ap(pretrained_run):
    """The debug variant as run (36 steps, score threshold 0.001): AP > 0, not 'No predictions'."""
    overrides = {**coco_debug_overrides(), "coco.engine": "detectron2", "model.backbone": "mixmim_tiny_32",
                 "init": "pretrain"}
    run_coco(apply_overrides(RunConfig(), overrides), pretrained_run)
    result = read_json(pretrained_run / "coco" / "result.json")
    assert result["engine"] == "detectron2" and result["steps"] == 36 and result["status"] == "done"
    assert {"ap_box", "ap_box50", "ap_box75", "ap_box_s", "ap_mask", "ap_mask_l"} <= set(result["metrics"])
    assert result["metrics"]["ap_box"] > 0 and result["metrics"]["ap_mask"] > 0
    assert (pretrained_run / "coco" / "d2" / "model_final.pth").is_file()
