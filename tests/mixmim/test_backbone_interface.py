"""Every registered backbone meets the one interface that every method uses (timm's registry-test idea)."""

import pytest
import timm
import torch

from mixmim.backbones import BACKBONES, Backbone, create_backbone

# Large backbones run at a reduced resolution: the wiring is the same, the compute is not.
REDUCED_SIZE = {"mixmim_base": 64, "mixmim_large": 64, "mixmim_huge": 64, "mixmim_base_384": 64,
                "mixmim_large_384": 64, "mixmim_vit_base_patch16": 64, "mixmim_vit_large_patch16": 64,
                "mixmim_vit_huge_patch14": 56}
SLOW = {"mixmim_huge", "mixmim_vit_huge_patch14", "mixmim_large", "mixmim_large_384", "mixmim_vit_large_patch16"}


def _params():
    for name in BACKBONES:
        marks = [pytest.mark.slow] if name in SLOW else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_interface_forward_backward(name):
    model = create_backbone(name, num_classes=7, img_size=REDUCED_SIZE.get(name, 0))
    assert isinstance(model, Backbone)
    assert len(model.stage_dims) == len(model.strides) and model.num_features == model.stage_dims[-1]
    assert model.num_layers > 0 and "head.weight" not in model.no_weight_decay()
    x = torch.randn(2, 3, model.img_size, model.img_size)
    tokens = model.embed(x)
    assert tokens.shape == (2, model.grid_size[0] * model.grid_size[1], model.stage_dims[0])
    feats = model.forward_tokens(tokens)
    h, w = model.out_grid_size
    assert feats.shape == (2, h * w, model.num_features)
    logits = model.forward_head(feats)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert 0 <= model.layer_id(pname) <= model.num_layers + 1, pname
    pyramid = model.forward_pyramid(x[:, :, :, : model.img_size - model.strides[-1]])  # non-square input
    assert [p.shape[1] for p in pyramid] == list(model.stage_dims)


@pytest.mark.parametrize("name", ["mixmim_tiny_32", "mixmim_vit_tiny_patch4_32"])
def test_group_mask_and_embeds_accepted(name):
    model = create_backbone(name, num_classes=0)
    x = torch.randn(2, 3, 32, 32)
    groups = (torch.arange(16).reshape(1, 4, 4) % 2)
    embeds = [torch.randn(2, d) for d in model.stage_dims]
    out = model.forward_tokens(model.embed(x), groups, embeds)
    plain = model.forward_tokens(model.embed(x))
    assert out.shape == plain.shape and not torch.allclose(out, plain)


def test_timm_registry_and_local_pretrained_file(tmp_path):
    src = timm.create_model("mixmim_tiny_32", num_classes=10)
    path = tmp_path / "official.pth"
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    sd["decoder_embed.weight"] = torch.zeros(4, 4)  # a pre-training file also holds decoder keys
    torch.save({"model": sd}, path)
    model = timm.create_model("mixmim_tiny_32", num_classes=10, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path)))
    for key, value in sd.items():
        if not key.startswith("decoder"):
            assert torch.equal(model.state_dict()[key], value), key


def test_unknown_backbone_names_the_registered_ones():
    with pytest.raises(KeyError, match="mixmim_base"):
        create_backbone("mixmim_basee")
