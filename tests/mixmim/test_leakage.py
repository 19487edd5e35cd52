"""MixMIM's masked self-attention keeps the two images apart in every stage, on both backbones."""

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.pretrain.masking import mix_mask, upsample_mask
from mixmim.pretrain.method import MixMIM


def _stage_features(method: MixMIM, images: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Every stage's output of the mixed batch (the hierarchical backbone's per-stage runner)."""
    enc = method.encoder
    tokens = method.mix_tokens(enc.embed(images), upsample_mask(mask, enc.grid_size).reshape(1, -1, 1))
    h, w = enc.grid_size
    x = (tokens + enc.absolute_pos_embed).reshape(images.shape[0], h, w, -1)
    return enc._run_stages(x, mask.long()[None])


@pytest.mark.parametrize("name", ["mixmim_tiny_32", "mixmim_small_64"])
def test_partner_change_leaves_features_exactly_unchanged(name):
    enc = create_backbone(name, num_classes=0)
    method = MixMIM(enc, decoder_dim=32, decoder_depth=1, decoder_heads=1).eval()
    size = enc.img_size
    images = torch.randn(4, 3, size, size)
    mask = mix_mask(method.mask_grid, 0.5, torch.Generator().manual_seed(3))
    changed = images.clone()
    changed[3] = torch.randn(3, size, size)  # sample 3 is the partner of sample 0
    with torch.no_grad():
        before, after = _stage_features(method, images, mask), _stage_features(method, changed, mask)
    for stage, (a, b) in enumerate(zip(before, after)):
        own = upsample_mask(mask, a.shape[1:3]) == 0  # sample 0's own image sits where M == 0
        assert (a[0][own] - b[0][own]).abs().max().item() == 0.0, f"leak in stage {stage}"
        assert (a[0][~own] - b[0][~own]).abs().max().item() > 0, f"stage {stage} ignores the partner"


def test_own_image_change_changes_features():
    enc = create_backbone("mixmim_tiny_32", num_classes=0)
    method = MixMIM(enc, decoder_dim=32, decoder_depth=1, decoder_heads=1).eval()
    images = torch.randn(4, 3, 32, 32)
    mask = mix_mask(method.mask_grid, 0.5, torch.Generator().manual_seed(3))
    changed = images.clone()
    changed[0] += torch.randn(3, 32, 32)
    with torch.no_grad():
        a = method.forward_encoder(images, mask)
        b = method.forward_encoder(changed, mask)
    own = (mask.flatten() == 0)
    assert (a[0][own] - b[0][own]).abs().max() > 0


def test_plain_vit_keeps_images_apart():
    enc = create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0)
    method = MixMIM(enc, mask_unit=8, decoder_dim=32, decoder_depth=1, decoder_heads=1).eval()
    images = torch.randn(4, 3, 32, 32)
    mask = mix_mask(method.mask_grid, 0.5, torch.Generator().manual_seed(1))
    changed = images.clone()
    changed[3] = torch.randn(3, 32, 32)
    with torch.no_grad():
        a, b = method.forward_encoder(images, mask), method.forward_encoder(changed, mask)
    own = upsample_mask(mask, enc.grid_size).flatten() == 0
    assert (a[0][own] - b[0][own]).abs().max().item() == 0.0
