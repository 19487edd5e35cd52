"""Our training recipe against the official engines, parameter by parameter and step by step.

The reference tables in ``official_recipes/`` were generated outside the project from the official code at the
commits they name (each file's ``source``): parameter name -> ``[weight_decay, lr_scale]`` of the official
optimizer's groups for the B-size models, and the lr every optimizer update ran with on a short schedule of
the official formula. Official names map to ours by :func:`ours`; every row is equal (MAE's fine-tuning
``pos_embed`` with its own recipe's ``model.train_pos_embed``). Each method's own fine-tuning recipe
(``baselines.method_finetune_defaults``) is checked against the values the references were generated with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from baselines.official import _beit_style_vit, beit_from_official_args, simmim_from_official_args
from baselines.registry import method_finetune_defaults
from baselines.tokenizers.kmeans import KMeansTokenizer
from mixmim.backbones import create_backbone
from mixmim.backbones.options import backbone_options
from mixmim.config import FinetuneConfig, PretrainConfig, RunConfig, apply_overrides
from mixmim.engine.optim import pretrain_param_groups
from mixmim.engine.recipe import make_recipe
from mixmim.evaluate.layer_decay import finetune_param_groups

REFERENCE = Path(__file__).parent / "official_recipes"


def own_finetune_config(method: str, backbone: str) -> RunConfig:
    """A run config with ``method``'s own fine-tuning recipe (``baselines.method_finetune_defaults``)."""
    return apply_overrides(RunConfig(), {"model.backbone": backbone, **method_finetune_defaults(method, backbone)})
_RULES = [(r"(^|\.)gamma_(\d)$", r"\1ls\2.gamma"), (r"\.attn\.[qv]_bias$", ".attn.qkv.bias"),
          (r"^blocks\.(\d+)\.attn\.relative_position_bias_table$", r"rel_pos_bias.\1.relative_position_bias_table"),
          (r"^encoder\.mask_token$", "mask_token")]


def reference(method: str) -> dict:
    return json.loads((REFERENCE / f"{method}.json").read_text())


def ours(name: str, prefix: str = "") -> str:
    """An official parameter name -> ours (BEiT-style block names -> timm's; SimMIM's encoder [MASK] token is
    the method's; ``prefix`` for official flat names that sit under our ``encoder.``)."""
    if prefix and not name.startswith(("mask_token", "lm_head")):
        name = prefix + name
    body = name.removeprefix("encoder.")
    for pattern, repl in _RULES[:3]:
        body = re.sub(pattern, repl, body)
    name = name[: len(name) - len(name.removeprefix("encoder."))] + body
    return re.sub(*_RULES[3], name)


def our_table(groups: list[dict]) -> dict[str, tuple[float, float]]:
    return {n: (g["weight_decay"], g["lr_scale"]) for g in groups for n in g["param_names"]}


def assert_tables_equal(official: dict, mine: dict, prefix: str = "") -> None:
    """Every official parameter has our weight decay and lr scale (to 1e-12), and every one of ours is in the
    official table."""
    mapped = {ours(n, prefix): v for n, v in official.items()}
    assert set(mine) == set(mapped), (sorted(set(mine) - set(mapped))[:5], sorted(set(mapped) - set(mine))[:5])
    wrong = [(n, mine[n], mapped[n]) for n in mine
             if mine[n][0] != mapped[n][0] or abs(mine[n][1] - mapped[n][1]) > 1e-12]
    assert not wrong, wrong[:5]


def test_name_mapping():
    assert ours("encoder.blocks.3.gamma_1") == "encoder.blocks.3.ls1.gamma"
    assert ours("blocks.3.attn.v_bias", "encoder.") == "encoder.blocks.3.attn.qkv.bias"
    assert ours("encoder.mask_token") == "mask_token" and ours("mask_token", "encoder.") == "mask_token"
    assert ours("blocks.0.attn.relative_position_bias_table") == "rel_pos_bias.0.relative_position_bias_table"


# --- parameter groups -------------------------------------------------------------------------------------


def test_simmim_vit_pretrain_groups():
    """SimMIM ViT-B: cls_token exempt, mask token and shared relative-position table decayed."""
    method = simmim_from_official_args()
    assert_tables_equal(reference("simmim")["vit_pretrain"]["groups"],
                        our_table(pretrain_param_groups(method, 0.05, official_quirks=True)))


def test_beit_pretrain_groups():
    """BEiT-B: skip {pos_embed, cls_token}; mask token and shared relative-position table decayed; the lm head."""
    ref = reference("beit")["pretrain_groups"]
    method = beit_from_official_args(KMeansTokenizer(torch.zeros(8192, 48)))
    assert_tables_equal(ref, our_table(pretrain_param_groups(method, 0.05, official_quirks=True)), prefix="encoder.")


def test_simmim_and_beit_vit_finetune_groups():
    """ViT-B fine-tuning (BEiT-style blocks, per-block tables, mean pooling + fc_norm): the ViT rule, layer
    decay 0.65, skip {pos_embed, cls_token}."""
    for ref in (reference("simmim")["vit_finetune"]["groups"], reference("beit")["finetune_groups"]):
        vit = _beit_style_vit(224, 16, 3, 768, 12, 12, 4.0, True, 0.1, 0.1, False, True, False, True)
        vit.reset_classifier(1000)
        mine = our_table(finetune_param_groups(vit, FinetuneConfig(layer_decay=0.65, weight_decay=0.05)))
        assert_tables_equal(ref, mine)


def test_simmim_swin_rule_on_the_hierarchical_backbone():
    """SimMIM's Swin-B fine-tuning rule on MixMIM-B (same depths and names): downsample at sum(d[:i+1]), head
    and final norm at L + 1, relative-position tables not decayed (layer_rule=swin, official_quirks=False)."""
    ref = reference("simmim")["swin_finetune"]["groups"]
    model = create_backbone("mixmim_base", num_classes=1000)
    cfg = FinetuneConfig(layer_decay=0.8, weight_decay=0.05, layer_rule="swin", official_quirks=False)
    assert_tables_equal({n: v for n, v in ref.items() if n in dict(model.named_parameters())},
                        our_table(finetune_param_groups(model, cfg)))
    assert reference("simmim")["swin_finetune"]["layer_decay"] == 0.8


# --- lr per step --------------------------------------------------------------------------------------------


def _our_trace(cfg, trace: dict, scale: float) -> list[float]:
    images = trace["steps_per_epoch"]  # one image per step: batch 1, world 1
    recipe = make_recipe(cfg, 1, torch.device("cpu"), images)
    schedule = recipe.lr_schedule()
    return [schedule.lr(k, scale) for k in range(recipe.total_steps)]


def _cfg(kind, trace: dict, schedule: str, **extra):
    return kind(epochs=trace["epochs"], warmup_epochs=trace["warmup_epochs"], batch_size=1, lr=trace["peak"],
                min_lr=trace["min_lr"], warmup_lr=trace["warmup_lr"], schedule=schedule, **extra)


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_beit_lr_trace(stage):
    """unilm cosine_scheduler: linspace warm-up from 0 (peak one step early), then the half-cosine."""
    trace = reference("beit")[f"{stage}_trace"]
    mine = _our_trace(_cfg(PretrainConfig if stage == "pretrain" else FinetuneConfig, trace, "beit_cosine"), trace, 1.0)
    assert len(mine) == len(trace["lr"])
    assert max(abs(a - b) for a, b in zip(mine, trace["lr"], strict=True)) <= 1e-9 * trace["peak"]


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_simmim_lr_trace(stage):
    """SimMIM: multi-step pre-training, timm cosine fine-tuning (warm-up start and floor not layer-scaled), both
    applied one update late; every group scale the official run used."""
    trace = reference("simmim")[f"vit_{stage}"]["trace"]
    if stage == "pretrain":
        milestones = tuple(m / trace["epochs"] for m in trace["multisteps"])
        cfg = _cfg(PretrainConfig, trace, "multistep", lr_milestones=milestones)
    else:
        cfg = _cfg(FinetuneConfig, trace, "timm_cosine")
    for column, scale in enumerate(trace["scales"]):
        official = [row[column] for row in trace["lr"]]
        mine = _our_trace(cfg, trace, scale)
        assert len(mine) == len(official)
        assert max(abs(a - b) for a, b in zip(mine, official, strict=True)) <= 1e-9 * trace["peak"], scale


def test_simmim_pretrain_groups_on_the_hierarchical_backbone():
    """SimMIM's Swin pre-training lists: mask token exempt, every relative-position table decayed (the
    keyword carries an ``encoder.`` prefix and never matches); names of Swin-B that MixMIM-B shares."""
    from baselines.registry import build_method, method_defaults
    from mixmim.config import RunConfig, apply_overrides

    cfg = apply_overrides(RunConfig(), {**method_defaults("simmim", "mixmim_base"), "model.backbone": "mixmim_base"})
    assert cfg.model.drop_path == 0.0 and cfg.pretrain.official_quirks
    mine = our_table(pretrain_param_groups(build_method(cfg), 0.05, official_quirks=True))
    ref = reference("simmim")["swin_pretrain"]["groups"]
    assert reference("simmim")["swin_pretrain"]["drop_path"] == 0.0
    shared = {ours(n): v for n, v in ref.items() if ours(n) in mine}
    assert len(shared) > 300 and "mask_token" in shared
    assert all(mine[n] == tuple(v) for n, v in shared.items()), [(n, mine[n], v) for n, v in shared.items()
                                                                  if mine[n] != tuple(v)][:5]


# --- MAE and MixMIM -----------------------------------------------------------------------------------------


def _flat(official: dict) -> dict:
    from mixmim.weights.official_keys import flat_to_method_key

    return {flat_to_method_key(n): v for n, v in official.items()}


def test_mae_and_mixmim_pretrain_groups():
    """timm add_weight_decay: only 1-D parameters and biases skip decay (mask token decayed), frozen sin-cos
    embeddings left out."""
    from baselines.official import mae_from_official_args
    from mixmim.pretrain.method import mixmim_from_official_args

    for method, model in (("mae", mae_from_official_args(norm_pix_loss=True)), ("mixmim", mixmim_from_official_args())):
        mine = our_table(pretrain_param_groups(model, 0.05, official_quirks=True))
        assert_tables_equal(_flat(reference(method)["pretrain_groups"]), mine)


def test_mae_finetune_groups():
    """MAE's own fine-tuning recipe (``method_finetune_defaults``) on ViT-B: ``model.train_pos_embed`` makes
    ``pos_embed`` a trained parameter at layer 0 without weight decay, so every parameter equals the official
    table, ``pos_embed`` included; with the shared ViT's fixed embedding, ``pos_embed`` is the only missing row."""
    cfg = own_finetune_config("mae", "mixmim_vit_base_patch16")
    assert cfg.model.train_pos_embed and cfg.model.fc_norm
    vit = create_backbone(cfg.model.backbone, num_classes=1000, **backbone_options(cfg.model))
    ref = reference("mae")["finetune_groups"]
    assert_tables_equal(ref, our_table(finetune_param_groups(vit, cfg.finetune)))
    fixed = create_backbone(cfg.model.backbone, num_classes=1000, fc_norm=True)
    assert_tables_equal({n: v for n, v in ref.items() if n != "pos_embed"},
                        our_table(finetune_param_groups(fixed, cfg.finetune)))


@pytest.mark.parametrize("size", ["base", "large", "huge"])
def test_mixmim_finetune_groups(size):
    """MixMIM's layer ids (head and final norm at L: the official quirk) for B, L and H, tables decayed."""
    model = create_backbone(f"mixmim_{size}", num_classes=1000, device="meta")
    mine = our_table(finetune_param_groups(model, FinetuneConfig()))
    assert_tables_equal(reference("mixmim")[f"finetune_groups_{size}"], mine)


@pytest.mark.parametrize("method", ["mae", "mixmim"])
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_mae_and_mixmim_lr_traces(method, stage):
    """adjust_learning_rate per iteration (fractional epoch): our ``cosine``, every group scale."""
    trace = reference(method)[f"{stage}_trace"]
    cfg = _cfg(PretrainConfig if stage == "pretrain" else FinetuneConfig, {**trace, "warmup_lr": 0.0}, "cosine")
    for column, scale in enumerate(trace["scales"]):
        official = [row[column] for row in trace["lr"]]
        mine = _our_trace(cfg, trace, scale)
        assert max(abs(a - b) for a, b in zip(mine, official, strict=True)) <= 1e-9 * trace["peak"], scale


def test_the_swin_rule_needs_the_hierarchical_backbone():
    vit = create_backbone("mixmim_vit_tiny_patch4_32", num_classes=10)
    with pytest.raises(ValueError, match="layer_rule=swin needs the hierarchical backbone"):
        finetune_param_groups(vit, FinetuneConfig(layer_rule="swin"))


def test_simmim_family_defaults():
    """SimMIM's Swin pre-training has no drop path; its ViT-B 0.1; other methods do not depend on the family."""
    from baselines.registry import method_defaults

    assert method_defaults("simmim", "mixmim_base")["model.drop_path"] == 0.0
    assert method_defaults("simmim", "mixmim_vit_base_patch16")["model.drop_path"] == 0.1
    assert method_defaults("beit", "mixmim_base") == method_defaults("beit")


# --- Each method's own fine-tuning recipe (baselines.method_finetune_defaults) against the official values ------
def test_simmim_own_finetune_recipe_is_the_official_config():
    """ViT-B and Swin-B (on MixMIM-B): every value the reference took from SimMIM's fine-tuning configs."""
    for family, backbone in (("vit", "mixmim_vit_base_patch16"), ("swin", "mixmim_base")):
        ref, ft = reference("simmim")[f"{family}_finetune"], own_finetune_config("simmim", backbone).finetune
        mine = (ft.blr, ft.lr_scale_base, ft.warmup_epochs, ft.warmup_lr, ft.min_lr, ft.clip_grad, ft.layer_decay,
                ft.drop_path)
        assert mine == (ref["blr"], 512, ref["warmup_epochs"], ref["warmup_lr_unscaled"], ref["min_lr_unscaled"],
                        ref["clip_grad"], ref["layer_decay"], ref["drop_path"]), family
        assert tuple(ref["betas"]) == (0.9, 0.999)  # our fine-tuning AdamW's default betas (build_adamw)
        assert ft.schedule == "timm_cosine" and ft.scale_floor_lrs and ref["scheduler"] == "cosine"
    swin = own_finetune_config("simmim", "mixmim_base")
    model = create_backbone("mixmim_base", num_classes=1000, device="meta")
    ref = reference("simmim")["swin_finetune"]["groups"]
    assert_tables_equal({n: v for n, v in ref.items() if n in dict(model.named_parameters())},
                        our_table(finetune_param_groups(model, swin.finetune)))


def test_beit_and_mixmim_own_finetune_recipes():
    """BEiT: layer decay 0.65 and the peak 4e-3 at batch 1024 its trace was generated with; MixMIM: its 0.7 and
    the B table; both the official schedules (BEiT's linspace warm-up from 0, MixMIM's cosine)."""
    beit = own_finetune_config("beit", "mixmim_vit_base_patch16").finetune
    assert beit.layer_decay == reference("beit")["finetune_layer_decay"]
    assert beit.blr * 1024 / beit.lr_scale_base == pytest.approx(reference("beit")["finetune_trace"]["peak"])
    assert (beit.schedule, beit.warmup_lr, beit.min_lr) == ("beit_cosine", 0.0, 1e-6)
    mixmim = own_finetune_config("mixmim", "mixmim_base")
    assert mixmim.finetune.layer_decay == reference("mixmim")["finetune_layer_decay"]
    model = create_backbone("mixmim_base", num_classes=1000, device="meta")
    assert_tables_equal(reference("mixmim")["finetune_groups_base"],
                        our_table(finetune_param_groups(model, mixmim.finetune)))
    assert own_finetune_config("mae", "mixmim_vit_base_patch16").finetune.layer_decay == \
        reference("mae")["finetune_layer_decay"]


def test_own_finetune_recipes_keep_the_head_switches_off_the_hierarchical_backbone():
    """The plain-ViT switches (fc_norm, trained pos_embed, cls-token probe) are off on MixMIM-B for every method,
    so the own recipe builds there; MixMIM's own recipe is the suite's defaults."""
    for method in ("mixmim", "mae", "simmim", "beit"):
        cfg = own_finetune_config(method, "mixmim_base")
        assert not cfg.model.fc_norm and not cfg.model.train_pos_embed and cfg.linprobe.features == "pooled"
        assert backbone_options(cfg.model) == {}
    default = RunConfig()
    assert own_finetune_config("mixmim", "mixmim_base").finetune == default.finetune
