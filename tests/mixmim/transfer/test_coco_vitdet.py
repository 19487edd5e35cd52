"""ViTDet's layout of the plain ViT for detection: windows + global blocks, zero decomposed relative positions."""

from __future__ import annotations

import pytest
import torch
from coco_helpers import SMALL

from mixmim.backbones import create_backbone
from mixmim.transfer.adapter import build_adapter
from mixmim.transfer.vitdet import block_windows, is_vitdet, vitdet_features, vitdet_global_blocks
from mixmim.transfer.weights import load_pretrained

VIT = "mixmim_vit_base_patch16"


def test_vit_b_at_1024_has_vitdet_block_layout_and_zero_relative_positions():
    with torch.device("meta"):
        adapter = build_adapter(VIT, 1024)  # default coco.attention: ViTDet's layout
    vit = adapter.encoder
    assert [i for i, w in enumerate(vit.vitdet_windows) if w == 0] == [2, 5, 8, 11]  # ViTDet-B's global blocks
    assert set(vit.vitdet_windows) == {0, 14}
    assert vit.blocks[0].attn.rel_pos_h.shape == (2 * 14 - 1, 64)  # window blocks: 14x14
    assert vit.blocks[2].attn.rel_pos_w.shape == (2 * 64 - 1, 64)  # global blocks: the 64x64 grid at 1024 px
    assert not vit.cls_token.requires_grad and not vit.norm.weight.requires_grad  # unused by ViTDet
    assert vitdet_global_blocks(24) == (5, 11, 17, 23) and vitdet_global_blocks(32) == (7, 15, 23, 31)


def test_relative_positions_start_at_zero_and_layouts_are_selectable():
    adapter = build_adapter(VIT, 64, **SMALL[VIT])
    assert all(float(p.detach().abs().sum()) == 0.0 for n, p in adapter.named_parameters() if "rel_pos" in n)
    assert block_windows(4, "window") == [14] * 4
    assert not is_vitdet(build_adapter(VIT, 64, attention="global", **SMALL[VIT]).encoder)  # the ViT as is
    with pytest.raises(ValueError, match="coco.attention"):
        build_adapter(VIT, 64, attention="shifted", **SMALL[VIT])


def test_mae_weights_load_and_only_relative_positions_and_pyramid_are_new():
    torch.manual_seed(0)
    source = create_backbone(VIT, **SMALL[VIT]).state_dict()  # MAE's key layout, with the head
    adapter = build_adapter(VIT, 64, **SMALL[VIT])
    mae = {**source, "mask_token": torch.zeros(1, 1, 16), "decoder_embed.weight": torch.zeros(16, 32)}
    report = load_pretrained(adapter, {"model": mae})  # an MAE pre-training checkpoint: decoder dropped
    assert len(report["loaded"]) == len(source) - 2  # everything but head.weight / head.bias
    assert {k for k in report["new"] if not k.startswith("simple_pyramid.")} == {
        f"encoder.blocks.{i}.attn.rel_pos_{a}" for i in range(2) for a in "hw"}
    state = adapter.state_dict()
    torch.testing.assert_close(state["encoder.blocks.1.attn.qkv.weight"], source["blocks.1.attn.qkv.weight"])


def test_window_blocks_with_zero_relative_positions_are_timm_blocks_on_each_window():
    """One 14x14 window (grid 14 at 224 px) and zero tables: exactly timm's Block on the patch tokens."""
    torch.manual_seed(0)
    adapter = build_adapter(VIT, 224, attention="window", **SMALL[VIT]).eval()
    vit, x = adapter.encoder, torch.randn(2, 3, 224, 224)
    tokens = vit.embed(x) + vit.pos_embed[:, 1:]
    for block in vit.blocks:
        tokens = block(tokens)
    expected = tokens.transpose(1, 2).reshape(2, -1, 14, 14)
    torch.testing.assert_close(vitdet_features(vit, x), expected, rtol=1e-5, atol=1e-5)
    torch.nn.init.normal_(vit.blocks[0].attn.rel_pos_h)  # the relative positions take part
    assert not torch.allclose(vitdet_features(vit, x), expected, atol=1e-3)


def test_adapter_runs_windows_with_padding_and_global_blocks_off_size():
    torch.manual_seed(0)
    adapter = build_adapter(VIT, 256, **SMALL[VIT])  # 16x16 grid: 14x14 windows padded, global at 16x16
    out = adapter(torch.randn(1, 3, 200, 300))  # padded to 256x320, global tables resized to 16x20
    assert out["p4"].shape == (1, 256, 16, 20)


def test_builtin_engine_trains_the_vitdet_backbone():
    from mixmim.transfer.torchvision_model import build_maskrcnn

    torch.manual_seed(0)
    adapter = build_adapter("mixmim_vit_tiny_patch4_32", 64)
    model = build_maskrcnn(adapter, num_classes=2, img_size=64, heads="compact").train()
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[:, 8:40, 8:40] = 1
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1]), "masks": masks}
    losses = model([torch.rand(3, 64, 64)], [target])
    sum(losses.values()).backward()
    vit = adapter.encoder
    assert vit.blocks[0].attn.rel_pos_h.grad is not None and vit.blocks[-1].attn.rel_pos_w.grad is not None
    assert vit.cls_token.grad is None  # unused and frozen, as ViTDet has no cls token
