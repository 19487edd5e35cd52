"""The fine-tuning optimizer groups equal the official MixMIM-B layer-decay table, quirk on and off.

The expected ids are written out from the official ``get_layer_id_for_mixmim`` (Sense-X/MixMIM
``util/lr_decay.py``), depths (2, 2, 18, 2): embeddings 0; block j of stage i -> sum(depths[:i]) + j + 1;
downsample of stage i -> sum(depths[:i+1]) + 1; final norm and head -> 24. Scales: 0.7 ** (25 - id).
(The engine's own tests cover the group mechanics on a stand-in backbone and on ``mixmim_tiny_32``.)
"""

from __future__ import annotations

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.config import FinetuneConfig
from mixmim.evaluate import finetune_param_groups

# parameter-name prefix -> official layer id, for every module of MixMIM-B with trainable parameters
OFFICIAL_MIXMIM_B_IDS = {
    "patch_embed.": 0,
    "layers.0.blocks.0.": 1,
    "layers.0.blocks.1.": 2,
    "layers.0.downsample.": 3,
    "layers.1.blocks.0.": 3,
    "layers.1.blocks.1.": 4,
    "layers.1.downsample.": 5,
    "layers.2.blocks.0.": 5,
    "layers.2.blocks.1.": 6,
    "layers.2.blocks.2.": 7,
    "layers.2.blocks.3.": 8,
    "layers.2.blocks.4.": 9,
    "layers.2.blocks.5.": 10,
    "layers.2.blocks.6.": 11,
    "layers.2.blocks.7.": 12,
    "layers.2.blocks.8.": 13,
    "layers.2.blocks.9.": 14,
    "layers.2.blocks.10.": 15,
    "layers.2.blocks.11.": 16,
    "layers.2.blocks.12.": 17,
    "layers.2.blocks.13.": 18,
    "layers.2.blocks.14.": 19,
    "layers.2.blocks.15.": 20,
    "layers.2.blocks.16.": 21,
    "layers.2.blocks.17.": 22,
    "layers.2.downsample.": 23,
    "layers.3.blocks.0.": 23,
    "layers.3.blocks.1.": 24,
    "norm.": 24,
    "head.": 24,
}
HEAD_AND_NORM = ("norm.", "head.")


@pytest.fixture(scope="module")
def mixmim_base() -> torch.nn.Module:
    with torch.device("meta"):  # the table needs names and shapes only, not 88M initialised weights
        return create_backbone("mixmim_base", num_classes=1000)


def expected_id(name: str, official_head_decay: bool) -> int:
    prefix = next(p for p in OFFICIAL_MIXMIM_B_IDS if name.startswith(p))
    if prefix in HEAD_AND_NORM and not official_head_decay:
        return 25  # mmpretrain / MAE: the head and final norm above the last block
    return OFFICIAL_MIXMIM_B_IDS[prefix]


@pytest.mark.parametrize("official_head_decay", [True, False])
def test_mixmim_base_layer_decay_table(mixmim_base, official_head_decay):
    cfg = FinetuneConfig(layer_decay=0.7, official_head_decay=official_head_decay)
    groups = finetune_param_groups(mixmim_base, cfg)
    ids = {n: g["layer_id"] for g in groups for n in g["param_names"]}
    scales = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    trainable = [n for n, p in mixmim_base.named_parameters() if p.requires_grad]
    assert sorted(ids) == sorted(trainable)  # every trainable parameter in exactly one group
    assert "absolute_pos_embed" not in ids  # fixed sin-cos: not optimised
    assert mixmim_base.num_layers == 24
    for name in trainable:
        want = expected_id(name, official_head_decay)
        assert ids[name] == want, name
        assert scales[name] == pytest.approx(0.7 ** (25 - want)), name
    head_scale = 0.7 if official_head_decay else 1.0
    assert scales["head.weight"] == pytest.approx(head_scale) and scales["norm.bias"] == pytest.approx(head_scale)
    assert scales["patch_embed.proj.weight"] == pytest.approx(0.7**25)
    assert scales["layers.3.blocks.1.mlp.fc2.weight"] == pytest.approx(0.7)


def test_mixmim_base_weight_decay_membership(mixmim_base):
    groups = finetune_param_groups(mixmim_base, FinetuneConfig(weight_decay=0.05))
    decay = {n for g in groups if g["weight_decay"] == 0.05 for n in g["param_names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0.0 for n in g["param_names"]}
    params = dict(mixmim_base.named_parameters())
    assert all(params[n].ndim == 1 for n in no_decay)  # official: only 1-D parameters skip weight decay
    assert {"head.weight", "layers.2.blocks.5.attn.qkv.weight", "layers.0.downsample.reduction.weight",
            "layers.1.blocks.0.attn.relative_position_bias_table"} <= decay
    assert {"head.bias", "norm.weight", "patch_embed.norm.bias"} <= no_decay
    clean = finetune_param_groups(mixmim_base, FinetuneConfig(weight_decay=0.05, official_quirks=False))
    clean_no_decay = {n for g in clean if g["weight_decay"] == 0.0 for n in g["param_names"]}
    assert "layers.1.blocks.0.attn.relative_position_bias_table" in clean_no_decay
