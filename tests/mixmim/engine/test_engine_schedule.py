"""The lr schedule: linear warmup, then a per-step half-cosine to min_lr."""

import math

import pytest

from mixmim.engine.schedule import lr_at_step, schedule_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def test_warmup_is_linear_from_zero():
    assert lr_at_step(0, 100, 10, 1.0) == 0.0
    assert lr_at_step(5, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at_step(2.5, 100, 10, 1.0) == pytest.approx(0.25)  # fractional steps
    assert lr_at_step(10, 100, 10, 1.0) == pytest.approx(1.0)


def test_cosine_reaches_min_lr_at_the_end():
    base, low = 1e-3, 1e-6
    assert lr_at_step(55, 100, 10, base, low) == pytest.approx((base + low) / 2)  # half-way
    assert lr_at_step(100, 100, 10, base, low) == low
    assert lr_at_step(150, 100, 10, base, low) == low
    t = 0.3
    expected = low + (base - low) * 0.5 * (1 + math.cos(math.pi * t))
    assert lr_at_step(10 + 90 * t, 100, 10, base, low) == pytest.approx(expected)


def test_schedule_is_monotone():
    lrs = [lr_at_step(s, 200, 20, 2.0, 0.1) for s in range(201)]
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    assert max(lrs) == pytest.approx(2.0)


def test_no_warmup_starts_at_base_lr():
    assert lr_at_step(0, 10, 0, 0.5) == 0.5


def test_schedule_steps_official_mixmim_b():
    # 600 epochs, 40 warmup, 1,281,167 images / 2048 per step = 625 steps per epoch (drop_last)
    assert schedule_steps(600, 40, 625) == (375_000, 25_000)


# --- the named schedules (each equals one official scheduler; traces: tests/baselines/test_official_recipes.py)


def test_cosine_schedule_is_the_default_bitwise():
    """``cosine`` multiplies the group scale into lr_at_step exactly as set_lr did (MixMIM's path unchanged)."""
    from mixmim.engine.schedule import LrSchedule

    s = LrSchedule("cosine", 100, 10, 1.2e-3, 1e-6)
    for step in (0, 3, 10, 57, 99, 100):
        for scale in (1.0, 0.7**5):
            assert s.lr(step, scale) == lr_at_step(step, 100, 10, 1.2e-3, 1e-6) * scale


def test_beit_cosine_warms_up_with_linspace_from_warmup_lr():
    from mixmim.engine.schedule import LrSchedule

    s = LrSchedule("beit_cosine", 20, 5, 1.0, 0.1, warmup_lr=0.0)
    assert [s.lr(k) for k in range(5)] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])  # peak one step early
    assert s.lr(5) == pytest.approx(1.0) and s.lr(20) == 0.1
    assert s.lr(3, 0.5) == pytest.approx(0.375)  # every value layer-scaled


def test_timm_cosine_floor_and_warmup_start_ignore_the_group_scale():
    """timm's scheduler starts each group at warmup_lr and ends it at min_lr whatever its lr_scale; t counts
    from step 0 (warm-up included); update k runs with the value at k - 1."""
    from mixmim.engine.schedule import LrSchedule

    s = LrSchedule("timm_cosine", 100, 10, 1.0, 1e-3, warmup_lr=1e-4)
    assert s.lr(0, 0.01) == s.lr(1, 0.01) == 1e-4
    assert s.lr(11, 0.01) == pytest.approx(1e-3 + 0.5 * (0.01 - 1e-3) * (1 + math.cos(math.pi * 10 / 100)))
    assert s.lr(101, 0.01) == 1e-3


def test_multistep_decays_at_milestones_after_warmup():
    from mixmim.engine.schedule import LrSchedule, milestone_steps

    s = LrSchedule("multistep", 80, 10, 2.0, warmup_lr=0.0, milestones=milestone_steps((0.875,), 80), gamma=0.1)
    assert s.milestones == (70,)
    assert s.lr(6, 0.5) == pytest.approx(0.5)  # warm-up: t = 5 of 10 towards 2.0 x 0.5
    assert s.lr(70) == 2.0 and s.lr(71) == pytest.approx(0.2)  # the milestone, one update late


def test_unknown_schedule_names_the_choices():
    from mixmim.engine.schedule import LrSchedule

    with pytest.raises(ValueError, match="timm_cosine"):
        LrSchedule("linear", 10, 1, 1.0)


def test_recipe_scales_warmup_start_and_floor_with_the_batch_when_asked():
    """SimMIM (scale_floor_lrs): WARMUP_LR and MIN_LR x batch / 512 like the lr; others absolute."""
    import torch

    from mixmim.config import FinetuneConfig
    from mixmim.engine.recipe import make_recipe

    cfg = FinetuneConfig(batch_size=8, blr=1.25e-3, lr_scale_base=512, warmup_lr=2.5e-7, min_lr=2.5e-7,
                         scale_floor_lrs=True, schedule="timm_cosine")
    r = make_recipe(cfg, 4, torch.device("cpu"), 64)  # effective batch 32
    assert r.warmup_lr == pytest.approx(2.5e-7 * 32 / 512) and r.min_lr == pytest.approx(2.5e-7 * 32 / 512)
    assert r.lr_schedule().kind == "timm_cosine"
    cfg.scale_floor_lrs = False
    assert make_recipe(cfg, 4, torch.device("cpu"), 64).min_lr == 2.5e-7
