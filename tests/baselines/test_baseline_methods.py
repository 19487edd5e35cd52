"""Every method on every backbone: forward/backward, gradients, masked-only losses, training, the interface."""

from __future__ import annotations

import math

import pytest
import torch
from baseline_helpers import (
    BACKBONES,
    METHOD_NAMES,
    InterfaceOnly,
    codebook_for,
    fixed_images,
    method_on_interface,
    small_config,
    small_method,
    train_losses,
)

from baselines.mae import MAE
from mixmim.backbones import create_backbone
from mixmim.pretrain.masking import upsample_mask

GRID = [(m, b) for m in METHOD_NAMES for b in BACKBONES]
MASKED_ONLY = [(m, b) for m in ("mae", "simmim", "beit") for b in BACKBONES]  # MixMIM predicts every patch


@pytest.mark.parametrize(("name", "backbone"), GRID)
def test_forward_backward_reaches_every_parameter(name, backbone, codebooks):
    method = small_method(name, backbone, codebook_for(name, backbone, codebooks))
    out = method(fixed_images(4))
    assert out["loss"].ndim == 0 and math.isfinite(out["loss"].item())
    assert {"pred", "mask"} <= set(out)
    out["loss"].backward()
    trainable = {n: p for n, p in method.named_parameters() if p.requires_grad}
    assert trainable, "no trainable parameters"
    missing = [n for n, p in trainable.items() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())
    assert not any(n.startswith("encoder.head") for n in trainable), "the encoder must have no head"


def _visible_pixels(method, mask: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 1, H, W] float, 1 on the pixels of visible mask units."""
    return (~upsample_mask(mask, (size, size)))[:, None].float()


@pytest.mark.parametrize(("name", "backbone"), MASKED_ONLY)
def test_loss_ignores_targets_of_visible_cells(name, backbone, codebooks):
    """Perturbing the *target* pixels of visible cells leaves the loss unchanged; of masked cells, changes it."""
    method = small_method(name, backbone, codebook_for(name, backbone, codebooks)).eval()
    images = fixed_images(4)
    mask = method.draw_mask(images.shape[0])  # [B, h, w]
    out = method(images, mask)
    visible = _visible_pixels(method, mask, images.shape[-1])
    noise = 3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    same = method.forward_loss(images + noise * visible, out["pred"], out["mask"])
    changed = method.forward_loss(images + noise * (1 - visible), out["pred"], out["mask"])
    torch.testing.assert_close(same, out["loss"], rtol=0, atol=1e-6)
    assert abs(changed.item() - out["loss"].item()) > 1e-3


@pytest.mark.parametrize("backbone", BACKBONES)
def test_mae_encoder_never_sees_masked_pixels(backbone):
    """MAE's definition on both backbones: the prediction does not depend on the masked pixels at all."""
    method = small_method("mae", backbone).eval()
    images = fixed_images(4)
    mask = method.draw_mask(images.shape[0])
    masked = 1 - _visible_pixels(method, mask, images.shape[-1])
    noise = 5 * torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pred = method(images, mask)["pred"]
        pred_perturbed = method(images + noise * masked, mask)["pred"]
    torch.testing.assert_close(pred_perturbed, pred, rtol=1e-5, atol=1e-5)


def test_mae_hierarchical_uses_group_exclusion_and_vit_uses_token_drop():
    vit = MAE(create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0), decoder_dim=32, decoder_depth=1,
              decoder_heads=2)
    hier = MAE(create_backbone("mixmim_tiny_32", num_classes=0), decoder_dim=32, decoder_depth=1,
               decoder_heads=2)
    assert vit.drop_tokens and vit.num_prefix == 1 and vit.decoder.decoder_pos_embed.shape[1] == 1 + 64
    assert not hier.drop_tokens and hier.num_prefix == 0 and hier.decoder.decoder_pos_embed.shape[1] == 16
    images = fixed_images(2)
    mask = vit.draw_mask(2)
    latent = vit.forward_encoder(images, mask)
    assert latent.shape[1] == 1 + int((~mask[0]).sum())  # cls + visible tokens only


@pytest.mark.slow
@pytest.mark.parametrize(("name", "backbone"), GRID)
def test_loss_decreases_on_fixed_data(name, backbone, codebooks):
    method = small_method(name, backbone, codebook_for(name, backbone, codebooks))
    losses = train_losses(method, fixed_images(8), steps=20, lr=2e-3)
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.95 * first, f"loss did not decrease: {losses}"


@pytest.mark.parametrize(("name", "backbone"), GRID)
def test_methods_use_only_the_backbone_interface(name, backbone, codebooks):
    cfg = small_config(name, backbone, codebook_for(name, backbone, codebooks))
    method = method_on_interface(name, cfg)
    assert isinstance(method.encoder, InterfaceOnly)
    out = method(fixed_images(2))
    out["loss"].backward()
    method.no_weight_decay()
    assert math.isfinite(out["loss"].item())


def test_interface_proxy_rejects_internals():
    proxy = InterfaceOnly(create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0))
    assert proxy.strides == (4,) and proxy.num_prefix_tokens == 1
    with pytest.raises(AttributeError, match="not part of the Backbone interface"):
        _ = proxy.pos_embed
    with pytest.raises(AttributeError, match="not part of the Backbone interface"):
        _ = proxy.blocks


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_tokens_return_prefix(backbone):
    """The interface extension MAE needs: ``return_prefix=True`` keeps the cls token (ViT); default unchanged."""
    encoder = create_backbone(backbone, num_classes=0).eval()
    tokens = encoder.embed(fixed_images(2))
    with torch.no_grad():
        plain = encoder.forward_tokens(tokens)
        with_prefix = encoder.forward_tokens(tokens, return_prefix=True)
    assert plain.shape[1] == encoder.out_grid_size[0] * encoder.out_grid_size[1]
    assert with_prefix.shape[1] == encoder.num_prefix_tokens + plain.shape[1]
    torch.testing.assert_close(with_prefix[:, encoder.num_prefix_tokens :], plain)
