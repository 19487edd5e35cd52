"""Parameter groups (weight decay membership, the official quirks, layer decay), lr formula, recipe."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.optim import Lars
from torch import nn

from mixmim.backbones import create_backbone
from mixmim.config import PretrainConfig
from mixmim.engine.optim import (
    ADAMW_IMPLS,
    absolute_lr,
    build_adamw,
    effective_batch_size,
    layer_decay_param_groups,
    no_weight_decay_names,
    pretrain_param_groups,
    set_lr,
    step_unless,
)
from mixmim.engine.recipe import make_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

DEPTH = 4


class FakeBlock(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))  # 2-D


class FakeBackbone(nn.Module):
    """The backbone interface: ``num_layers``, ``layer_id``, ``no_weight_decay`` (MixMIM-style ids)."""

    num_layers = DEPTH

    def __init__(self, head_id: int = DEPTH) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 2, 2)
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, 16, 8), requires_grad=False)  # fixed sin-cos
        self.blocks = nn.ModuleList(FakeBlock() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 10)
        self.head_id = head_id

    def layer_id(self, name: str) -> int:
        if name.startswith(("patch_embed", "absolute_pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.head_id  # norm and head: MixMIM's official id (num_layers)

    def no_weight_decay(self) -> set[str]:
        return {"absolute_pos_embed", "relative_position_bias_table"}  # keyword form covers every block


class FakeMethod(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = FakeBackbone()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 8))  # [1, 1, C]
        self.decoder_pred = nn.Linear(8, 12)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}


def names_by_decay(groups) -> tuple[set[str], set[str]]:
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["param_names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["param_names"]}
    return decay, no_decay


def test_effective_batch_and_lr_formula():
    assert effective_batch_size(128, 16, 1) == 2048  # official MixMIM-B pre-training
    assert absolute_lr(1.5e-4, 2048, 256) == pytest.approx(1.2e-3)
    assert absolute_lr(5e-4, effective_batch_size(128, 8, 1), 256) == pytest.approx(2e-3)  # fine-tuning
    assert absolute_lr(1e-4, 2048, 512) == pytest.approx(4e-4)  # SimMIM scales by batch / 512
    assert absolute_lr(1.5e-4, 2048, 256, lr=3e-3) == 3e-3  # an absolute lr wins
    assert effective_batch_size(64, 4, 8) == 2048


def test_recipe_counts_steps_per_process():
    cfg = PretrainConfig(epochs=10, warmup_epochs=2, batch_size=8, accum_iter=2, blr=1e-3)
    recipe = make_recipe(cfg, world_size=4, device=torch.device("cpu"), num_images=1000)
    # 250 images per rank -> 31 batches -> 30 micro-batches (whole accumulation groups) -> 15 steps
    assert (recipe.iters_per_epoch, recipe.steps_per_epoch, recipe.total_steps, recipe.warmup_steps) == (
        30,
        15,
        150,
        30,
    )
    assert recipe.effective_batch == 64 and recipe.lr == pytest.approx(1e-3 * 64 / 256)
    assert recipe.precision == "fp32"
    assert make_recipe(cfg, 1, torch.device("cpu"), 1000, lr_scale_base=512).lr == pytest.approx(1e-3 * 16 / 512)
    with pytest.raises(ValueError, match=r"^pretrain: 10 training images .* pass --set pretrain.batch_size=5 "):
        make_recipe(cfg, 1, torch.device("cpu"), 10, stage="pretrain")  # batch 8 x accum 2 > 10 images
    with pytest.raises(ValueError, match="more than 8 images"):  # fewer images than processes x accum
        make_recipe(PretrainConfig(batch_size=8, accum_iter=2), 4, torch.device("cpu"), 7, stage="pretrain")


def test_pretrain_groups_official_quirk_decays_mask_token_and_tables():
    model = FakeMethod()
    groups = pretrain_param_groups(model, 0.05, official_quirks=True)
    decay, no_decay = names_by_decay(groups)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decay | no_decay == trainable and not decay & no_decay
    assert "encoder.absolute_pos_embed" not in trainable  # frozen: in no group
    assert "mask_token" in decay
    assert {f"encoder.blocks.{i}.attn.relative_position_bias_table" for i in range(DEPTH)} <= decay
    assert no_decay == {
        n for n, p in model.named_parameters() if p.requires_grad and (p.ndim == 1 or n.endswith(".bias"))
    }
    assert all(g["lr_scale"] == 1.0 for g in groups)


def test_pretrain_groups_without_quirk_skip_no_weight_decay_names():
    model = FakeMethod()
    decay, no_decay = names_by_decay(pretrain_param_groups(model, 0.05, official_quirks=False))
    assert "mask_token" in no_decay
    assert {f"encoder.blocks.{i}.attn.relative_position_bias_table" for i in range(DEPTH)} <= no_decay
    assert "encoder.patch_embed.weight" in decay and "decoder_pred.weight" in decay


def test_no_weight_decay_names_collects_submodules():
    names = no_weight_decay_names(FakeMethod())
    assert "mask_token" in names and "encoder.absolute_pos_embed" in names
    assert "encoder.blocks.3.attn.relative_position_bias_table" in names
    assert "encoder.blocks.3.attn.qkv.weight" not in names


def scales_by_name(groups) -> dict[str, float]:
    return {n: g["lr_scale"] for g in groups for n in g["param_names"]}


@pytest.mark.parametrize("official", [True, False])
def test_layer_decay_scales(official):
    groups = layer_decay_param_groups(FakeBackbone(), 0.05, 0.7, official_head_decay=official)
    scales = scales_by_name(groups)
    # scale = 0.7 ** (num_layers + 1 - layer_id); num_layers + 1 = 5
    assert scales["patch_embed.weight"] == pytest.approx(0.7**5)
    for i in range(DEPTH):
        assert scales[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(0.7 ** (DEPTH - i))
    head = 0.7 if official else 1.0  # the official quirk: head and final norm at id num_layers
    for name in ("head.weight", "head.bias", "norm.weight", "norm.bias"):
        assert scales[name] == pytest.approx(head)
    decay, no_decay = names_by_decay(groups)
    assert "blocks.0.attn.relative_position_bias_table" in no_decay and "norm.weight" in no_decay
    assert "head.weight" in decay and "blocks.2.attn.qkv.weight" in decay
    assert [g["layer_id"] for g in groups] == sorted(g["layer_id"] for g in groups)


def test_layer_decay_on_the_real_backbones():
    mixmim = create_backbone("mixmim_tiny_32", num_classes=10)
    official = scales_by_name(layer_decay_param_groups(mixmim, 0.05, 0.7))
    plain = scales_by_name(layer_decay_param_groups(mixmim, 0.05, 0.7, official_head_decay=False))
    assert official["head.weight"] == pytest.approx(0.7) and plain["head.weight"] == 1.0
    assert official["patch_embed.proj.weight"] == pytest.approx(0.7 ** (mixmim.num_layers + 1))
    vit = create_backbone("mixmim_vit_tiny_patch4_32", num_classes=10)  # MAE's table: head at 1.0 either way
    assert scales_by_name(layer_decay_param_groups(vit, 0.05, 0.75))["head.weight"] == 1.0


def test_out_of_range_layer_id_fails():
    with pytest.raises(ValueError, match="outside"):
        layer_decay_param_groups(FakeBackbone(head_id=DEPTH + 2), 0.05, 0.7)


def test_set_lr_applies_group_scales():
    groups = layer_decay_param_groups(FakeBackbone(), 0.05, 0.5)
    optimizer = build_adamw(groups, betas=(0.9, 0.95))
    set_lr(optimizer, 2.0)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(2.0 * group["lr_scale"])
        assert group["betas"] == (0.9, 0.95)


def test_adamw_is_fused_on_one_supported_device_and_matches_the_default_update():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    reference = copy.deepcopy(model)
    fused = build_adamw(pretrain_param_groups(model, 0.05), betas=(0.9, 0.95))
    plain = torch.optim.AdamW(pretrain_param_groups(reference, 0.05), lr=0.0, betas=(0.9, 0.95))
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    x = torch.randn(8, 16)
    for _ in range(5):
        for net, opt in ((model, fused), (reference, plain)):
            set_lr(opt, 1e-2)
            net(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    integer = {"params": [torch.zeros(3, dtype=torch.long)], "weight_decay": 0.0}
    assert not build_adamw([integer]).defaults["fused"]  # the fused kernel takes floating tensors only


def _optimizer(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    if kind == "fused-adamw":
        return build_adamw([{"params": list(model.parameters()), "weight_decay": 0.05}])
    return Lars(model.parameters(), lr=0.1, momentum=0.9, trust_coeff=0.001, always_adapt=True)  # the probe's


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Parameters and the optimizer's tensor state, in a fixed order (cloned)."""
    state = [v for p in model.parameters() for _, v in sorted(optimizer.state[p].items()) if torch.is_tensor(v)]
    return [t.detach().clone() for t in [*model.parameters(), *state]]


def _step(model, optimizer, grads, found=None):
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    set_lr(optimizer, 0.1)
    optimizer.step() if found is None else step_unless(optimizer, torch.tensor(float(found)))
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("kind", ["fused-adamw", "lars"])
def test_step_unless_skips_on_the_flag_and_steps_exactly_without_it(kind):
    torch.manual_seed(0)
    plain, flagged = nn.Linear(4, 3), nn.Linear(4, 3)
    flagged.load_state_dict(plain.state_dict())
    plain_opt, flagged_opt = _optimizer(kind, plain), _optimizer(kind, flagged)
    grads = [[torch.randn_like(p) for p in plain.parameters()] for _ in range(3)]
    nan_grads = [torch.full_like(p, float("nan")) for p in plain.parameters()]
    _step(flagged, flagged_opt, nan_grads, found=1)  # a skipped first step: as if it never happened
    for g in grads:
        _step(plain, plain_opt, g)
        _step(flagged, flagged_opt, g, found=0)
        before = _state(flagged, flagged_opt)
        _step(flagged, flagged_opt, nan_grads, found=1)
        after = _state(flagged, flagged_opt)
        assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.equal(a, b) for a, b in zip(_state(plain, plain_opt), _state(flagged, flagged_opt)))


def test_adamw_implementations_are_chosen_by_name():
    model = torch.nn.Linear(4, 4)
    groups = pretrain_param_groups(model, 0.05)
    chosen = {impl: build_adamw(groups, implementation=impl).defaults for impl in ADAMW_IMPLS}
    assert chosen["auto"]["fused"] is True and chosen["fused"]["fused"] is True  # auto: fused on the CPU
    assert chosen["foreach"]["foreach"] is True and chosen["single"]["foreach"] is False
    assert not chosen["default"]["fused"] and chosen["default"]["foreach"] is None  # torch decides at step time
    with pytest.raises(ValueError, match="implementation"):
        build_adamw(groups, implementation="sgd")
