"""MAE's linear probe: its one-draw RandomResizedCrop (``linprobe.crop=mae``) and the cls token after the final
norm (``linprobe.features=cls_token``), against the facts of facebookresearch/mae@efb2a80 (``util/crop.py``,
``main_linprobe.py``, ``models_vit.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mixmim.backbones import create_backbone
from mixmim.backbones.options import backbone_options
from mixmim.config import RunConfig, apply_overrides
from mixmim.data.transforms import MAERandomResizedCrop, mae_crop_box, pretrain_transform
from mixmim.evaluate.features import pooled_features
from mixmim.evaluate.linprobe import probe_config


def reference_box(width: int, height: int, scale, ratio, gen: torch.Generator) -> tuple[int, int, int, int]:
    """The official formula, written from its description: area fraction ~ U(scale) then log-aspect ~ U(log
    ratio), one draw each; w = round(sqrt(area * a)), h = round(sqrt(area / a)), each clamped to the image; top
    then left uniform over the fitting positions (inclusive bounds); the log-aspect and its exp in float32.
    Draws from ``gen`` in that order."""
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=gen, dtype=torch.float32).item()
    u = torch.rand(1, generator=gen, dtype=torch.float32).item()
    low, high = np.log(np.float32(ratio[0])), np.log(np.float32(ratio[1]))  # float32, as the official
    a = float(np.exp(np.float32(float(low) + (float(high) - float(low)) * u)))
    area = width * height * s
    w, h = min(round(math.sqrt(area * a)), width), min(round(math.sqrt(area / a)), height)
    top = int(torch.randint(0, height - h + 1, (1,), generator=gen).item())
    left = int(torch.randint(0, width - w + 1, (1,), generator=gen).item())
    return top, left, h, w


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (64, 64), (40, 300)])
def test_mae_crop_boxes_equal_the_official_formula(size):
    """200 seeded draws per image size, with MAE's probe scale (0.08, 1) and the default ratio (3/4, 4/3), and a
    wide ratio that needs the clamp; the box always fits."""
    width, height = size
    for scale, ratio in (((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (0.1, 10.0))):
        for seed in range(200):
            torch.manual_seed(seed)
            mine = mae_crop_box(width, height, scale, ratio)
            uniform = torch.Generator().manual_seed(seed)
            # torch's uniform_ on a float32 tensor equals low + (high - low) * rand: checked by the equality below
            expected = reference_box(width, height, scale, ratio, uniform)
            assert mine == expected, (seed, scale, ratio)
            top, left, h, w = mine
            assert 0 <= top <= height - h and 0 <= left <= width - w and 1 <= h <= height and 1 <= w <= width


def test_the_mae_crop_draws_once():
    """One draw of each kind (no retry loop): the global generator advances the same for every box, unlike
    torchvision's loop, and the transform takes it through ``linprobe.crop=mae``."""
    img = Image.new("RGB", (120, 90))
    torch.manual_seed(0)
    MAERandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
    after_one = torch.rand(1)
    torch.manual_seed(0)
    mae_crop_box(120, 90, (0.08, 1.0), (3 / 4, 4 / 3))
    assert torch.equal(torch.rand(1), after_one)
    transform = pretrain_transform(32, crop_min_scale=0.08, crop="mae")
    assert isinstance(transform.transforms[0], MAERandomResizedCrop)
    assert transform(img).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="crop 'tf'"):
        pretrain_transform(32, crop="tf")


def test_probe_reads_the_cls_token_after_the_final_norm():
    """``linprobe.features=cls_token``: the feature is token 0 of the normed sequence (MAE's ``global_pool=False``:
    ``norm(x)[:, 0]``), computed here by hand from the blocks; the fine-tuning head switch fc_norm is not used."""
    cfg = apply_overrides(RunConfig(), {"model.backbone": "mixmim_vit_tiny_patch4_32", "model.fc_norm": True,
                                        "linprobe.features": "cls_token"})
    probe = probe_config(cfg)
    assert probe.model.global_pool == "token" and not probe.model.fc_norm and cfg.model.fc_norm
    torch.manual_seed(0)
    vit = create_backbone(probe.model.backbone, num_classes=0, **backbone_options(probe.model)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = vit.patch_embed(x) + vit.pos_embed[:, 1:]
        seq = torch.cat([(vit.cls_token + vit.pos_embed[:, :1]).expand(2, -1, -1), tokens], dim=1)
        for block in vit.blocks:
            seq = block(seq)
        expected = vit.norm(seq)[:, 0]
        assert torch.allclose(pooled_features(vit, x), expected, atol=1e-6)
        mean_of_patches = vit.norm(seq)[:, 1:].mean(1)
        assert not torch.allclose(pooled_features(vit, x), mean_of_patches, atol=1e-3)


def test_probe_config_defaults_and_errors():
    """The default probe config is returned as it is; the cls token needs a plain ViT."""
    cfg = RunConfig()
    assert probe_config(cfg) is cfg
    hier = apply_overrides(RunConfig(), {"linprobe.features": "cls_token"})
    with pytest.raises(ValueError, match="needs a plain ViT"):
        probe_config(hier)
