"""timm's model contract on the small backbones, without the network (``test_timm_models.py`` runs timm's own
tests on every backbone): cfgs, strict kwargs, device/dtype, heads, feature extraction, pruning, names."""

import warnings

import pytest
import timm
import torch

from mixmim.backbone_names import DEPRECATED_BACKBONE_NAMES
from mixmim.backbones import BACKBONES, create_backbone
from mixmim.backbones.registry import BACKBONE_SPECS, final_stride
from mixmim.bench.flops import param_counts

SMALL = ["mixmim_tiny_32", "mixmim_vit_tiny_patch4_32"]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_model_has_a_registered_pretrained_cfg(name):
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    size = BACKBONE_SPECS[name][1]["img_size"]
    assert cfg["url"] == "" and cfg["fixed_input_size"] and cfg["input_size"] == (3, size, size)
    assert cfg["classifier"] == "head" and cfg["first_conv"] == "patch_embed.proj" and cfg["paper_ids"]
    assert cfg["pool_size"][0] * final_stride(name) == size
    assert cfg["interpolation"] == "bicubic" and cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN
    assert name in timm.list_models(name_matches_cfg=True) and name not in timm.list_models(pretrained=True)


def test_names_cannot_be_taken_for_timm_models_and_old_names_warn():
    ours = set(timm.list_models("mixmim_*"))
    assert ours == set(BACKBONES)
    for old, new in DEPRECATED_BACKBONE_NAMES.items():
        assert old not in timm.list_models() and new in ours
    with pytest.warns(DeprecationWarning, match="mixmim_vit_tiny_patch4_32"):
        old = create_backbone("vit_tiny_patch4_32", num_classes=0)
    assert type(old) is type(create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0)  # the current name: no warning


def test_old_names_keep_working_in_configs():
    from mixmim.transfer.recipes import coco_paper_overrides

    with pytest.warns(DeprecationWarning, match="mixmim_vit_base_patch16"):
        assert coco_paper_overrides("vit_base_patch16")["coco.layer_decay"] == 0.7


@pytest.mark.parametrize("name", SMALL)
def test_strict_kwargs_device_and_dtype(name):
    with pytest.raises(TypeError, match="not_a_model_arg"):
        timm.create_model(name, not_a_model_arg=1)
    meta = timm.create_model(name, device="meta")
    assert {t.device.type for t in [*meta.parameters(), *meta.buffers()]} == {"meta"}
    half = timm.create_model(name, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert half.in_chans == 3 and half.head_hidden_size == half.num_features and half.get_classifier() is half.head


@pytest.mark.parametrize("name", SMALL)
def test_fixed_sincos_embedding_is_a_persistent_buffer(name):
    model = create_backbone(name)
    (key,) = model.official_frozen_params
    assert key in model.state_dict() and key not in dict(model.named_parameters())
    total, trainable = param_counts(model)
    assert total == trainable + model.state_dict()[key].numel()  # counted as the official frozen parameter


@pytest.mark.parametrize("name", SMALL)
def test_timm_features_are_a_view_of_our_tokens(name):
    """forward_features is timm's map; pooling it gives exactly what the suite's token path gives."""
    model = create_backbone(name, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_token_features(x)
        fmap = model.forward_features(x)
        assert fmap.shape == (2, model.num_features, *model.out_grid_size)
        assert torch.equal(fmap.flatten(2).transpose(1, 2), tokens)
        assert torch.equal(model.forward_head(fmap), model.forward_head(tokens))
        assert torch.equal(model(x), model.forward_head(tokens))
        final, taps = model.forward_intermediates(x)
        torch.testing.assert_close(final, fmap)
    assert len(taps) == len(model.feature_info)


@pytest.mark.parametrize("name", SMALL)
def test_reset_classifier_global_pool(name):
    model = create_backbone(name, num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    model.reset_classifier(3, "")
    h, w = model.out_grid_size
    assert model(x).shape == (1, 3, h, w) and model.global_pool == ""
    model.reset_classifier(0, "avg")
    assert model(x).shape == (1, model.num_features)
    model.to(torch.float64).reset_classifier(4)
    assert model.head.weight.dtype == torch.float64 and not model.head.training and model.global_pool == "avg"
    if "token" in model.global_pools:  # the plain ViT: its cls token (MAE's and BEiT's published option)
        model.reset_classifier(4, "token")
        x64 = x.double()
        assert model(x64).shape == (1, 4) and model.forward_features(x64).shape[1] == 1 + h * w
        model.reset_classifier(4, "avg")
    with pytest.raises(ValueError, match="global_pool='max'"):
        model.reset_classifier(4, "max")
    no_pool = timm.create_model(name, num_classes=0, global_pool="")
    assert no_pool(x).ndim == 4


def test_features_only_gives_the_stage_maps_of_forward_pyramid():
    model = timm.create_model("mixmim_tiny_32", features_only=True).eval()
    ref = create_backbone("mixmim_tiny_32")
    ref.load_state_dict(model.model.state_dict(), strict=False)  # the feature net drops norm and head
    x = torch.randn(2, 3, 48, 40)  # any size, as forward_pyramid
    with torch.no_grad():
        maps, pyramid = model(x), ref.eval().forward_pyramid(x)
    assert model.feature_info.channels() == [32, 64, 128] and model.feature_info.reduction() == [2, 4, 8]
    assert len(maps) == 3
    for m, p in zip(maps, pyramid):
        torch.testing.assert_close(m, p)
    vit = timm.create_model("mixmim_vit_tiny_patch4_32", features_only=True)
    assert [tuple(o.shape) for o in vit(torch.randn(1, 3, 32, 32))] == [(1, 64, 8, 8)] * 3


@pytest.mark.parametrize("name", SMALL)
def test_prune_keeps_the_tap_and_drops_the_rest(name):
    model = create_backbone(name).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = model.prune_intermediate_layers([1], prune_norm=True)
        torch.testing.assert_close(model.forward_features(x), taps[1])
    assert kept == [1] and model.num_classes == 0
    model.forward_features(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())  # nothing left that does not reach the tap


def test_img_size_off_the_default_follows_in_the_cfg():
    model = create_backbone("mixmim_tiny_32", img_size=64)
    assert model.pretrained_cfg["input_size"] == (3, 64, 64) and model.pretrained_cfg["pool_size"] == (8, 8)
    with pytest.raises(ValueError, match="square"):
        create_backbone("mixmim_tiny_32", img_size=(32, 48))


def test_local_official_file_loads_resized_and_into_features_only(tmp_path):
    src = create_backbone("mixmim_tiny_32", num_classes=0)
    path = tmp_path / "pretrain.pth"
    torch.save({"model": {**src.state_dict(), "mask_token": torch.zeros(1, 1, 32)}}, path)  # official layout
    big = timm.create_model("mixmim_tiny_32", img_size=64, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert big.absolute_pos_embed.shape == (1, 32 * 32, 32)  # the fixed embedding resized, as the official fine-tune
    assert torch.equal(big.patch_embed.proj.weight, src.patch_embed.proj.weight)
    feats = timm.create_model("mixmim_tiny_32", features_only=True, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path)))
    qkv = "layers.1.blocks.0.attn.qkv.weight"
    assert torch.equal(feats.model.state_dict()[qkv], src.state_dict()[qkv])


def test_pretrained_without_a_local_file_names_the_fix():
    with pytest.raises(ValueError, match="pretrained_cfg_overlay=dict"):
        timm.create_model("mixmim_base", pretrained=True)
