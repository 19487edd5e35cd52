"""The plain ViT's baseline switches (layer scale, relative position bias, no absolute embedding, pooling).

The default path is checked elsewhere (golden losses, params/FLOPs); here each switch does what the
official BEiT/SimMIM/MAE code does, and composes with token dropping and group masks.
"""

from __future__ import annotations

import pytest
import torch

from mixmim.backbones.rel_pos_bias import RelativePositionBias, cls_relative_position_index
from mixmim.backbones.vit import PlainViT

BEIT_LIKE = dict(init_values=0.1, use_abs_pos_emb=False, rel_pos_bias="shared")


def _vit(**switches) -> PlainViT:
    torch.manual_seed(0)
    vit = PlainViT(img_size=32, patch_size=4, num_classes=5, embed_dim=32, depth=2, num_heads=2, **switches).eval()
    if vit.rel_pos_bias is not None:  # the official init is zero; random tables make the tests see the bias
        for table in (p for n, p in vit.named_parameters() if n.endswith("relative_position_bias_table")):
            torch.nn.init.normal_(table, std=0.5)
    return vit


def test_default_is_unchanged():
    vit = _vit()
    assert vit.rel_pos_bias is None and vit.fc_norm is None and vit.pos_embed is not None
    assert not any("gamma" in k or "rel_pos" in k or "fc_norm" in k for k in vit.state_dict())


def test_switch_keys():
    keys = set(_vit(**BEIT_LIKE).state_dict())
    assert {"blocks.0.ls1.gamma", "blocks.1.ls2.gamma", "rel_pos_bias.relative_position_bias_table"} <= keys
    assert "pos_embed" not in keys
    assert torch.equal(_vit(**BEIT_LIKE).blocks[0].ls1.gamma, torch.full((32,), 0.1))  # init_values
    layer = _vit(rel_pos_bias="layer", fc_norm=True)
    assert {"rel_pos_bias.1.relative_position_bias_table", "fc_norm.weight"} <= set(layer.state_dict())
    assert isinstance(layer.norm, torch.nn.Identity)


def test_bias_entries():
    """bias[h, 1 + i, 1 + j] is the table row of the offset (dy, dx) of patch i from patch j; the cls
    rows/columns use the three last rows (cls-to-token, token-to-cls, cls-to-cls)."""
    g = 3
    rpb = RelativePositionBias((g, g), 1)
    rpb.relative_position_bias_table.data = torch.arange(rpb.relative_position_bias_table.numel()).float()[:, None]
    bias = rpb()[0]
    for i in range(g * g):
        for j in range(g * g):
            dy, dx = i // g - j // g, i % g - j % g
            assert bias[1 + i, 1 + j] == (dy + g - 1) * (2 * g - 1) + dx + g - 1
    n = (2 * g - 1) ** 2
    assert bias[0, 1:].eq(n).all() and bias[1:, 0].eq(n + 1).all() and bias[0, 0] == n + 2
    assert cls_relative_position_index((g, g)).shape == (10, 10)


@pytest.mark.parametrize("mode", ["shared", "layer"])
def test_bias_changes_the_output_and_follows_dropped_tokens(mode):
    vit = _vit(init_values=0.1, use_abs_pos_emb=False, rel_pos_bias=mode)
    tokens = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = vit.forward_tokens(tokens)
        keep = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(s))[:20] for s in (2, 3)])
        kept = vit.forward_tokens(tokens, keep=keep)
        # Token dropping = attention among the kept tokens with their own biases: compare to a group mask.
        groups = torch.ones(2, 8, 8, dtype=torch.long)
        groups.view(2, -1).scatter_(1, keep, 0)  # kept tokens in group 0 (with the cls token)
        grouped = vit.forward_tokens(tokens, groups=groups)
        for table in (p for n, p in vit.named_parameters() if n.endswith("relative_position_bias_table")):
            table.zero_()
        no_bias = vit.forward_tokens(tokens)
    torch.testing.assert_close(kept, torch.gather(grouped, 1, keep[..., None].expand(-1, -1, 32)), rtol=1e-4,
                               atol=1e-5)
    assert (full - no_bias).abs().max() > 1e-3


def test_pooling_switches():
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cls = _vit(global_pool="token")
        tokens = cls.forward_tokens(cls.embed(images), return_prefix=True)
        torch.testing.assert_close(cls(images), cls.head(tokens[:, 0]))
        fc = _vit(fc_norm=True)
        tokens = fc.forward_tokens(fc.embed(images))  # no final norm: fc_norm after the pooling
        torch.testing.assert_close(fc(images), fc.head(fc.fc_norm(tokens.mean(1))))
    with pytest.raises(ValueError, match="global_pool"):
        _vit(global_pool="max")
    with pytest.raises(ValueError, match="rel_pos_bias"):
        _vit(rel_pos_bias="swin")


def test_bias_refuses_another_grid():
    vit = _vit(**BEIT_LIKE)
    with pytest.raises(ValueError, match="relative position bias"):
        vit.forward_pyramid(torch.randn(1, 3, 48, 48))
