"""The detection adapter: pyramid shapes and strides at arbitrary sizes, attention layouts, the backbone option."""

from __future__ import annotations

import pytest
import torch
from coco_helpers import SMALL

from mixmim.backbones import BACKBONE_SPECS, create_backbone
from mixmim.transfer.adapter import build_adapter
from mixmim.transfer.layout import evenly_spaced_global, global_blocks


@pytest.mark.parametrize("name", ["mixmim_base", "mixmim_vit_base_patch16"])
@pytest.mark.parametrize("size", [(100, 150), (64, 64), (129, 97)])
def test_pyramid_strides_4_to_32_at_arbitrary_sizes(name, size):
    adapter = build_adapter(name, img_size=128, **SMALL[name])
    out = adapter(torch.randn(2, 3, *size))
    h_pad = -(-size[0] // adapter.size_divisibility) * adapter.size_divisibility
    w_pad = -(-size[1] // adapter.size_divisibility) * adapter.size_divisibility
    strides = [adapter.out_strides[n] for n in out]
    assert strides[:4] == [4, 8, 16, 32]
    for level, feat in out.items():
        s = adapter.out_strides[level]
        assert feat.shape == (2, adapter.out_channels[level], h_pad // s, w_pad // s), level
        assert torch.isfinite(feat).all()


def test_hierarchical_levels_are_stages_with_norms_and_vit_levels_are_the_simple_pyramid():
    hier = build_adapter("mixmim_base", 128, **SMALL["mixmim_base"])
    assert hier.kind == "hierarchical" and not hier.has_neck
    assert hier.out_features == ["stage1", "stage2", "stage3", "stage4"]
    assert [hier.out_channels[n] for n in hier.out_features] == [16, 32, 64, 128]
    assert len(hier.stage_norms) == 4 and isinstance(hier.encoder.norm, torch.nn.Identity)
    vit = build_adapter("mixmim_vit_base_patch16", 128, out_channels=48, **SMALL["mixmim_vit_base_patch16"])
    assert vit.kind == "plain" and vit.has_neck
    assert vit.out_features == ["p2", "p3", "p4", "p5", "p6"]
    assert set(vit.out_channels.values()) == {48}
    assert vit.size_divisibility == 64  # p6


@pytest.mark.parametrize("name", sorted(n for n in BACKBONE_SPECS if "tiny" in n or "small" in n))
def test_every_small_registered_backbone_gives_a_pyramid(name):
    adapter = build_adapter(name, img_size=64)
    out = adapter(torch.randn(1, 3, 50, 70))
    strides = [adapter.out_strides[n] for n in out]
    assert strides == sorted(strides) and len(out) >= 3


def test_global_block_layouts():
    depths = (2, 2, 18, 2)
    assert evenly_spaced_global(18) == [5, 11, 17] and evenly_spaced_global(2) == [1]
    assert global_blocks(depths, "window_global") == (9, 15, 21, 22, 23)
    assert global_blocks(depths, "global") == tuple(range(4, 24))
    assert global_blocks(depths, "window") == ()
    with pytest.raises(ValueError, match="coco.attention must be one of"):
        global_blocks(depths, "shifted")


def test_windows_of_mixmim_base_at_1024():
    with torch.device("meta"):
        adapter = build_adapter("mixmim_base", img_size=1024)
    windows = [[b.window for b in stage.blocks] for stage in adapter.encoder.layers]
    assert windows[0] == [14, 14] and windows[1] == [14, 14]
    assert windows[2] == [64 if j in (5, 11, 17) else 14 for j in range(18)]
    assert windows[3] == [32, 32]
    tables = adapter.encoder.layers[2].blocks[5].attn.relative_position_bias_table
    assert tuple(tables.shape) == ((2 * 64 - 1) ** 2, 16)


def test_global_blocks_option_is_backwards_compatible():
    torch.manual_seed(0)
    plain = create_backbone("mixmim_small_64", num_classes=0)
    torch.manual_seed(0)
    same = create_backbone("mixmim_small_64", num_classes=0, global_blocks=())
    assert [b.window for s in plain.layers for b in s.blocks] == [8, 8, 8, 8, 4]
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(plain.forward_features(x), same.forward_features(x))


def test_group_masks_with_mixed_block_windows_keep_groups_apart():
    """Global blocks get their own window-partitioned group mask: group-0 outputs ignore group-1 pixels."""
    torch.manual_seed(0)
    model = create_backbone("mixmim_base", num_classes=0, img_size=128, embed_dim=16, depths=(1, 1, 3, 1),
                            num_heads=(1, 1, 2, 2), window_size=(4, 4, 4, 2), global_blocks=(3,)).eval()
    assert [b.window for b in model.layers[2].blocks] == [4, 8, 4]
    groups = torch.tensor([[[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], [1, 1, 0, 0]]])  # 32-px cells
    x1 = torch.randn(1, 3, 128, 128)
    pixels = groups.repeat_interleave(32, 1).repeat_interleave(32, 2)[:, None].bool()  # [1, 1, 128, 128]
    x2 = torch.where(pixels, torch.randn_like(x1), x1)
    out1 = model.forward_tokens(model.embed(x1), groups=groups)  # [1, 16, C] at stride 32
    out2 = model.forward_tokens(model.embed(x2), groups=groups)
    keep = groups.flatten() == 0
    torch.testing.assert_close(out1[0, keep], out2[0, keep])
    assert not torch.allclose(out1[0, ~keep], out2[0, ~keep])
