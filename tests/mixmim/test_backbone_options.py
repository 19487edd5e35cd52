"""``backbone_options``: the run config's ViT switches -> PlainViT arguments (none by default)."""

from __future__ import annotations

import pytest

from baselines import build_method, method_defaults
from mixmim.backbones.options import backbone_options
from mixmim.config import ModelConfig, RunConfig, apply_overrides


def test_defaults_give_no_arguments_for_every_backbone():
    from mixmim.backbones import BACKBONE_SPECS

    for name in BACKBONE_SPECS:
        assert backbone_options(ModelConfig(backbone=name)) == {}


def test_switches_map_to_the_vit_arguments():
    cfg = ModelConfig(backbone="mixmim_vit_tiny_patch4_32", layer_scale=0.1, abs_pos_emb=False, rel_pos_bias="layer",
                      global_pool="token", fc_norm=True)
    assert backbone_options(cfg) == {"init_values": 0.1, "use_abs_pos_emb": False, "rel_pos_bias": "layer",
                                     "global_pool": "token", "fc_norm": True}


def test_bad_values_and_backbones_are_refused():
    with pytest.raises(ValueError, match="only on the plain ViT"):
        backbone_options(ModelConfig(backbone="mixmim_tiny_32", rel_pos_bias="shared"))
    with pytest.raises(ValueError, match="choose one of"):
        backbone_options(ModelConfig(backbone="mixmim_vit_tiny_patch4_32", rel_pos_bias="per_block"))
    with pytest.raises(ValueError, match=">= 0"):
        backbone_options(ModelConfig(backbone="mixmim_vit_tiny_patch4_32", layer_scale=-1.0))


def test_a_run_builds_the_baselines_own_vit():
    cfg = apply_overrides(RunConfig(), {**method_defaults("simmim"), "model.backbone": "mixmim_vit_tiny_patch4_32",
                                        "method.mask_unit": 8, "model.layer_scale": 0.1, "model.abs_pos_emb": False,
                                        "model.rel_pos_bias": "shared"})
    encoder = build_method(cfg).encoder
    assert encoder.pos_embed is None and encoder.rel_pos_bias is not None
    assert encoder.blocks[0].ls1.gamma.detach().eq(0.1).all()
