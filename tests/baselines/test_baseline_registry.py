"""The registry: every method by name, the source recipes as valid overrides, build_method from a RunConfig."""

from __future__ import annotations

import logging

import pytest
import torch
from baseline_helpers import BACKBONES, METHOD_NAMES, codebook_for, small_config

from baselines import CARDS, METHODS, build_method, method_defaults
from baselines.beit import BEiT
from baselines.mae import MAE
from baselines.simmim import SimMIM
from mixmim.bench.flops import count_flops
from mixmim.config import ConfigError, RunConfig, apply_overrides
from mixmim.pretrain.method import MixMIM, PretrainMethod

CLASSES = {"mixmim": MixMIM, "mae": MAE, "simmim": SimMIM, "beit": BEiT}  # the methods the suite ships


def test_registry_names():
    """The registry is the cards (discovered), in card order: the shipped methods in the smoke table's order."""
    assert list(METHODS) == list(CARDS) and [n for n in CARDS if n in CLASSES] == list(CLASSES)
    registered = ", ".join(CARDS)
    with pytest.raises(KeyError, match=f"registered: {registered}"):
        method_defaults("data2vec")
    with pytest.raises(ConfigError, match=f"'data2vec' for key 'method.name': allowed values are {registered}, random"):
        apply_overrides(RunConfig(), {"method.name": "data2vec"})  # refused when the config is built
    cfg = RunConfig()
    cfg.method.name = "data2vec"  # set directly, past the config checks
    with pytest.raises(KeyError, match="unknown method"):
        build_method(cfg)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_defaults_are_valid_overrides(name):
    defaults = method_defaults(name)
    cfg = apply_overrides(RunConfig(), defaults)  # unknown keys or bad types would raise ConfigError
    assert cfg.method.name == name
    for key in ("method.mask_ratio", "pretrain.blr", "pretrain.betas", "pretrain.lr_scale_base",
                "pretrain.warmup_epochs"):
        assert key in defaults, f"{name} lacks {key}"
    if name in CLASSES:
        assert CLASSES[name].lr_scale_base == cfg.pretrain.lr_scale_base  # the engine uses the method's


def test_source_recipes():
    mae, simmim, beit = method_defaults("mae"), method_defaults("simmim"), method_defaults("beit")
    assert (mae["pretrain.blr"], mae["pretrain.betas"], mae["method.mask_ratio"], mae["pretrain.lr_scale_base"]) \
        == (1.5e-4, (0.9, 0.95), 0.75, 256)
    assert (simmim["pretrain.lr_scale_base"], simmim["method.mask_ratio"], simmim["method.mask_unit"],
            simmim["pretrain.betas"]) == (512, 0.6, 32, (0.9, 0.999))
    assert beit["method.mask_strategy"] == "block" and round(196 * beit["method.mask_ratio"]) == 75
    assert beit["pretrain.blr"] * 2048 / beit["pretrain.lr_scale_base"] == pytest.approx(1.5e-3)
    mixmim = method_defaults("mixmim")
    assert (mixmim["method.mask_ratio"], mixmim["pretrain.blr"], mixmim["pretrain.betas"]) \
        == (0.5, 1.5e-4, (0.9, 0.95))


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_build_method(name, backbone, codebooks):
    cfg = apply_overrides(small_config(name, backbone, codebook_for(name, backbone, codebooks)),
                          {"seed": 7})
    method = build_method(cfg)
    assert type(method) is CLASSES[name] if name in CLASSES else isinstance(method, PretrainMethod)
    assert method.encoder.num_classes == 0 and method.encoder.img_size == 32
    assert torch.equal(method.generator.get_state(), torch.Generator().manual_seed(7).get_state())


def test_ignored_options_are_reported(caplog):
    cfg = apply_overrides(small_config("simmim", "mixmim_vit_tiny_patch4_32"), {"method.mix_embedding": True})
    with caplog.at_level(logging.INFO, logger="baselines.registry"):
        build_method(cfg)
    assert "simmim ignores method.mix_embedding" in caplog.text


@pytest.mark.parametrize("name", ["mae", "simmim", "beit"])
def test_vit_methods_count_flops_on_meta(name, codebooks):
    """Budgets count FLOPs on the meta device: the ViT baselines keep their mask bookkeeping on the CPU."""
    with torch.device("meta"):
        method = build_method(small_config(name, "mixmim_vit_tiny_patch4_32", codebooks["mixmim_vit_tiny_patch4_32"]))
        images = torch.empty(2, 3, 32, 32)
    flops = count_flops(method, images)
    assert flops > 0
    if name == "mae":  # token dropping: the encoder sees a quarter of the tokens
        with torch.device("meta"):
            simmim = build_method(small_config("simmim", "mixmim_vit_tiny_patch4_32"))
        assert flops < 0.5 * count_flops(simmim, images)


def test_initial_weights_depend_on_the_seed_alone():
    """torch seeds its global generator at random at start-up: the build must not depend on it."""
    cfg = apply_overrides(RunConfig(), {"model.backbone": "mixmim_tiny_32", "method.mask_unit": 8,
                                        "method.decoder_dim": 32, "method.decoder_depth": 1})
    torch.manual_seed(123)
    first = build_method(cfg).state_dict()
    torch.rand(7)  # a different global state
    before = torch.get_rng_state()
    second = build_method(cfg).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is left alone
    other = build_method(apply_overrides(cfg, {"seed": 1})).state_dict()
    assert not torch.equal(first["encoder.patch_embed.proj.weight"], other["encoder.patch_embed.proj.weight"])


class _Recording:
    """A MethodConfig that records which fields are read."""

    def __init__(self, cfg):
        self.cfg, self.read = cfg, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self.cfg, name)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_each_builder_reads_only_the_fields_its_card_declares(name, codebooks):
    """``MethodCard.fields`` is what ``build_method`` reports as ignored: a builder that reads another field
    would make that report wrong."""
    from mixmim.backbones import create_backbone

    cfg = small_config(name, "mixmim_tiny_32", codebook_for(name, "mixmim_tiny_32", codebooks))
    method = _Recording(cfg.method)
    CARDS[name].build(create_backbone("mixmim_tiny_32", num_classes=0), method, None)
    assert method.read and method.read <= CARDS[name].fields, method.read - CARDS[name].fields
