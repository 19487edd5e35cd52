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
