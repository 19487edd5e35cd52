"""Pre-trained weights into the adapter: full key coverage (every backbone key used, none invented)."""

from __future__ import annotations

import pytest
import torch
from coco_helpers import SMALL

from mixmim.backbones import create_backbone
from mixmim.engine.checkpoint import atomic_torch_save
from mixmim.transfer.adapter import build_adapter
from mixmim.transfer.weights import load_pretrained, map_encoder_keys, new_detection_keys


@pytest.mark.parametrize("name", ["mixmim_base", "mixmim_vit_base_patch16", "mixmim_tiny_32",
                                  "mixmim_vit_tiny_patch4_32"])
def test_key_mapping_covers_every_backbone_key_and_invents_none(name):
    kwargs = SMALL.get(name, {})
    source = create_backbone(name, **kwargs).state_dict()  # with the classification head
    adapter = build_adapter(name, img_size=source_size(name), **kwargs)
    mapped = map_encoder_keys(source, adapter)
    target = set(adapter.state_dict())
    assert set(mapped) <= target  # none invented
    dropped = {k for k in source if k.startswith("head.")}
    assert len(mapped) == len(source) - len(dropped)  # every other key used, none merged
    assert target - set(mapped) == new_detection_keys(adapter)  # the rest is new detection layers
    if adapter.kind == "hierarchical":
        last = len(adapter.encoder.stage_dims) - 1
        assert mapped[f"stage_norms.{last}.weight"] is source["norm.weight"]
        assert all(k.startswith("stage_norms.") for k in new_detection_keys(adapter))
    else:
        assert all(k.startswith("simple_pyramid.") or "rel_pos" in k for k in new_detection_keys(adapter))


def source_size(name: str) -> int:
    return 224 if name in SMALL else 32


def test_load_suite_encoder_and_official_pretraining_checkpoint(tmp_path):
    torch.manual_seed(0)
    encoder = create_backbone("mixmim_tiny_32", num_classes=0)
    sd = encoder.state_dict()
    atomic_torch_save({"model": sd, "meta": {}}, tmp_path / "encoder.pth")
    official = {**sd, "mask_token": torch.zeros(1, 1, 8), "decoder_embed.weight": torch.zeros(8, 128)}
    for source in (tmp_path / "encoder.pth", {"model": official}):
        adapter = build_adapter("mixmim_tiny_32", img_size=32, attention="window")
        report = load_pretrained(adapter, source)
        state = adapter.state_dict()
        assert len(report["loaded"]) == len(sd)
        torch.testing.assert_close(state["encoder.layers.0.blocks.0.attn.qkv.weight"],
                                   sd["layers.0.blocks.0.attn.qkv.weight"])
        torch.testing.assert_close(state["stage_norms.2.bias"], sd["norm.bias"])
        assert sorted(report["new"]) == ["stage_norms.0.bias", "stage_norms.0.weight", "stage_norms.1.bias",
                                         "stage_norms.1.weight"]


def test_load_at_detection_resolution_resizes_position_and_global_tables():
    torch.manual_seed(0)
    sd = create_backbone("mixmim_tiny_32", num_classes=0).state_dict()
    adapter = build_adapter("mixmim_tiny_32", img_size=128)  # global blocks in stages 2-3
    load_pretrained(adapter, sd)
    state = adapter.state_dict()
    assert state["encoder.absolute_pos_embed"].shape[1] == 64 * 64
    table = state["encoder.layers.2.blocks.0.attn.relative_position_bias_table"]
    assert table.shape[0] == (2 * 16 - 1) ** 2  # global at 16x16 tokens, resized from the 4x4 window's table


def test_wrong_backbone_fails_with_a_clear_message():
    sd = create_backbone("mixmim_small_64", num_classes=0).state_dict()
    adapter = build_adapter("mixmim_tiny_32", img_size=32)
    with pytest.raises(RuntimeError, match="does not match|does not fit"):
        load_pretrained(adapter, sd)
