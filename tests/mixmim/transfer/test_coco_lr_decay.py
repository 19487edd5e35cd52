"""Layer-wise lr decay of detection parameter groups, and ViTDet's step schedule."""

from __future__ import annotations

import pytest
import torch
from coco_helpers import SMALL

from mixmim.transfer.adapter import build_adapter
from mixmim.transfer.lr_decay import (
    detection_layer_id,
    detection_lr_factor,
    detection_param_groups,
    encoder_lr_factor_func,
)
from mixmim.transfer.schedule import lr_factor, milestones, step_values
from mixmim.transfer.torchvision_model import build_maskrcnn


@pytest.fixture(scope="module")
def detector():
    adapter = build_adapter("mixmim_base", 128, **SMALL["mixmim_base"])  # depths (1, 1, 3, 1): 6 blocks
    return build_maskrcnn(adapter, num_classes=3, img_size=128, heads="compact"), adapter.encoder


def test_layer_ids_of_detector_parameters(detector):
    model, encoder = detector
    d = 0.7
    expected = {
        "backbone.body.encoder.patch_embed.proj.weight": (0, d**7),
        "backbone.body.encoder.layers.0.blocks.0.attn.qkv.weight": (1, d**6),
        "backbone.body.encoder.layers.0.downsample.reduction.weight": (2, d**5),
        "backbone.body.encoder.layers.2.blocks.2.mlp.fc1.weight": (5, d**2),
        "backbone.body.encoder.layers.3.blocks.0.norm1.weight": (6, d**1),
        "backbone.body.stage_norms.3.weight": (7, 1.0),
        "backbone.fpn.layer_blocks.0.0.weight": (7, 1.0),
        "rpn.head.conv.0.0.weight": (7, 1.0),
        "roi_heads.mask_predictor.mask_fcn_logits.weight": (7, 1.0),
    }
    names = dict(model.named_parameters())
    for name, (lid, factor) in expected.items():
        assert name in names, name
        assert detection_layer_id(name, encoder) == lid, name
        assert detection_lr_factor(name, encoder, d) == pytest.approx(factor), name


def test_param_groups_cover_every_trainable_parameter_once(detector):
    model, encoder = detector
    groups = detection_param_groups(model, encoder, weight_decay=0.1, layer_decay=0.7)
    names = [n for g in groups for n in g["param_names"]]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable)
    by_name = {n: g for g in groups for n in g["param_names"]}
    table = "backbone.body.encoder.layers.2.blocks.0.attn.relative_position_bias_table"
    assert by_name[table]["weight_decay"] == 0.0  # the backbone's no_weight_decay()
    assert by_name["backbone.body.encoder.layers.2.blocks.0.attn.qkv.bias"]["weight_decay"] == 0.0
    assert by_name["backbone.body.encoder.layers.2.blocks.0.attn.qkv.weight"]["weight_decay"] == 0.1
    assert by_name["roi_heads.box_head.fc6.weight"]["lr_scale"] == 1.0
    assert by_name["backbone.body.encoder.patch_embed.proj.weight"]["lr_scale"] == pytest.approx(0.7**7)


def test_lr_factor_func_from_a_backbone_name_matches_the_model(detector):
    _, encoder = detector
    func = encoder_lr_factor_func("mixmim_base", 0.8)  # full-size MixMIM-B: 24 blocks
    assert func("backbone.bottom_up.adapter.encoder.patch_embed.proj.weight") == pytest.approx(0.8**25)
    assert func("backbone.bottom_up.adapter.encoder.layers.2.blocks.17.attn.qkv.weight") == pytest.approx(0.8**3)
    assert func("backbone.fpn_lateral2.weight") == 1.0
    assert func("roi_heads.box_predictor.cls_score.weight") == 1.0


def test_vitdet_step_schedule():
    assert milestones(184375) == [163889, 177546]
    assert milestones(92187) == [81944, 88773]  # the 50-epoch recipe halves them
    assert step_values(12) == ([11], [1.0, 0.1])
    assert lr_factor(0, 1000, 250) == pytest.approx(0.001)
    assert lr_factor(125, 1000, 250) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(250, 1000, 250) == 1.0
    assert lr_factor(900, 1000, 250) == pytest.approx(0.1)
    assert lr_factor(999, 1000, 250) == pytest.approx(0.01)
    assert torch.tensor([lr_factor(s, 1000, 250) for s in range(1000)]).diff()[250:].le(0).all()
