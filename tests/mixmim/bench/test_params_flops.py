"""Sizes of the official models (official-mixmim.md): parameters exactly, FLOPs within 0.5%."""

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.bench.flops import backbone_flops, param_counts
from mixmim.pretrain.method import mixmim_from_official_args

# (all params incl. the frozen sin-cos embedding, trainable, GFLOPs @ default resolution), 1000 classes.
OFFICIAL = {
    "mixmim_base": (88_344_352, 87_942_944, 16.35),
    "mixmim_large": (197_396_668, 196_794_556, 35.86),
    "mixmim_huge": (659_262_658, 658_158_786, 117.67),
    "mixmim_base_384": (89_577_440, None, 52.57),
    "mixmim_large_384": (199_246_300, None, 112.15),
}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_params_exact(name):
    with torch.device("meta"):
        model = create_backbone(name, num_classes=1000)
    total, trainable = param_counts(model)
    assert total == OFFICIAL[name][0]
    if OFFICIAL[name][1] is not None:
        assert trainable == OFFICIAL[name][1]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_flops_within_half_percent(name):
    gflops = backbone_flops(name) / 1e9
    assert abs(gflops - OFFICIAL[name][2]) / OFFICIAL[name][2] < 0.005, gflops


def test_pretrain_model_params():
    with torch.device("meta"):
        model = mixmim_from_official_args()
    assert param_counts(model)[0] == 114_665_784


def test_flop_counter_counts_attention_and_layernorm():
    """A single LayerNorm + Linear: fvcore gives 5*numel + in*out*tokens."""
    from mixmim.bench.flops import count_flops

    model = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 4))
    assert count_flops(model, torch.randn(3, 8)) == 5 * 24 + 3 * 8 * 4
    q = torch.randn(1, 2, 5, 8)
    flops = count_flops(torch.nn.Identity(), (q,), lambda t: torch.nn.functional.scaled_dot_product_attention(t, t, t))
    assert flops == 2 * (2 * 5 * 5 * 8)  # QK^T and AV, one FLOP per multiply-add
