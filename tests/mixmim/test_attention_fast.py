"""The ``grouped`` attention (tokens sorted by group, dense attention per segment) equals the official one."""

import numpy as np
import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.backbones.attention import WindowAttention, attention_impl, get_attention_impl, set_attention_impl
from mixmim.backbones.groups import WindowGroupMask, bucket_lengths, plan_segments, window_partition
from mixmim.pretrain.method import MixMIM


def _pair(window=4, heads=2, dim=16):
    grouped = WindowAttention(dim, window, heads, impl="grouped")
    official = WindowAttention(dim, window, heads, impl="official")
    official.load_state_dict(grouped.state_dict())
    return grouped, official


def _random_groups(shape, excluded: float, generator: torch.Generator) -> torch.Tensor:
    groups = torch.randint(0, 3, shape, generator=generator)
    groups[torch.rand(shape, generator=generator) < excluded] = -1
    return groups


def _assert_same_forward_and_grads(a, b, x, mask):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa, mask), b(xb, mask)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("shared,excluded", [(True, 0.0), (True, 0.3), (False, 0.0), (False, 0.3)])
def test_grouped_equals_official_on_random_groups(shared, excluded):
    gen = torch.Generator().manual_seed(int(shared) * 2 + int(excluded > 0))
    grouped, official = _pair()
    groups = _random_groups((1 if shared else 3, 8, 8), excluded, gen)
    mask = WindowGroupMask.from_groups(groups, 4)
    assert mask.segment_plan(max_cost=1.0) is not None
    x = torch.randn(3, 4, 16, 16, generator=gen)  # [B, nW, N, C]: 8x8 tokens in 4x4 windows
    _assert_same_forward_and_grads(grouped, official, x, mask)


def test_grouped_zeroes_queries_without_keys_and_ignores_excluded_keys():
    grouped, official = _pair()
    groups = torch.zeros(1, 8, 8, dtype=torch.long)
    groups[0, :4, :4] = -1  # a whole window of excluded tokens
    groups[0, 4, 4] = -1
    groups[0, 4:, :4] = 1  # a window entirely in group 1
    mask = WindowGroupMask.from_groups(groups, 4)
    x = torch.randn(2, 4, 16, 16)
    out = grouped(x, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 0], grouped.proj.bias.expand(2, 16, 16), rtol=0, atol=1e-6)
    _assert_same_forward_and_grads(grouped, official, x, mask)
    y = x.clone()
    y[:, 3, 0] += 100.0  # token (4, 4): excluded
    assert torch.equal(grouped(x, mask)[:, 3, 1:], grouped(y, mask)[:, 3, 1:])


def test_dense_fallback_equals_official():
    """Without a worthwhile sort (one group per window) or without a mask, ``grouped`` runs dense scores."""
    grouped, official = _pair()
    groups = torch.zeros(1, 8, 8, dtype=torch.long)
    groups[0, 0, 0] = -1  # an excluded token: an empty row in the dense path
    mask = WindowGroupMask.from_groups(groups, 4)
    assert mask.segment_plan() is None
    x = torch.randn(2, 4, 16, 16)
    _assert_same_forward_and_grads(grouped, official, x, mask)
    _assert_same_forward_and_grads(grouped, official, x, None)
    with torch.no_grad():  # inference takes SDPA's fused CPU kernel
        torch.testing.assert_close(grouped(x, mask), official(x, mask), rtol=1e-5, atol=1e-5)


def test_plan_covers_every_grouped_token_once():
    gen = torch.Generator().manual_seed(0)
    groups = _random_groups((2, 8, 8), 0.2, gen)
    g = window_partition(groups[..., None], 4)[..., 0].flatten(0, 1)  # [G * nW, N]
    plan = plan_segments(g, max_buckets=2)
    assert len(plan.buckets) <= 2
    flat = g.flatten()
    slots = torch.cat([b.tokens for b in plan.buckets])
    real = torch.cat([(b.positions >= 0).flatten() for b in plan.buckets])
    assert sorted(slots[real].tolist()) == torch.nonzero(flat >= 0).flatten().tolist()
    for b in plan.buckets:  # a segment's slots (pads included) share one window and one group
        tok = b.tokens.view(b.num_segments, b.length)
        assert (flat[tok] == flat[tok[:, :1]]).all() and (tok // 16 == tok[:, :1] // 16).all()
    assert torch.equal(slots[plan.inverse[flat >= 0]], torch.nonzero(flat >= 0).flatten())
    assert (plan.inverse[flat < 0] == slots.numel()).all()


def test_bucket_lengths_minimise_padded_cost():
    lengths = np.array([3, 3, 5, 9, 9, 12, 16, 16, 16])
    ends = bucket_lengths(lengths, 2)
    values = sorted(set(lengths.tolist()))

    def cost(cuts):
        total, low = 0, 0
        for end in cuts:
            total += ((lengths > low) & (lengths <= end)).sum() * end**2
            low = end
        return total

    best = min(cost([c, 16]) for c in values[:-1])
    assert ends[-1] == 16 and cost(ends) <= best * 1.05
    assert bucket_lengths(np.array([7, 7, 7]), 4) == [7]


def _tiny_method(name="mixmim_tiny_32"):
    return MixMIM(create_backbone(name, num_classes=0), decoder_dim=32, decoder_depth=1, decoder_heads=1)


@pytest.mark.parametrize("name", ["mixmim_tiny_32", "mixmim_small_64"])
def test_mixmim_loss_and_grads_equal_under_both_impls(name):
    method = _tiny_method(name)
    size = method.encoder.img_size
    images = torch.randn(4 if size <= 32 else 2, 3, size, size)
    mask = method.draw_mask()
    results = {}
    for impl in ("grouped", "official"):
        with attention_impl(impl):
            method.zero_grad(set_to_none=True)
            out = method(images, mask=mask)
            out["loss"].backward()
            results[impl] = (out["loss"].detach(), out["pred"].detach(),
                             [p.grad.clone() for p in method.parameters() if p.grad is not None])
    (la, pa, ga), (lb, pb, gb) = results["grouped"], results["official"]
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_grouped_keeps_partner_images_apart():
    """The leakage property under the ``grouped`` impl explicitly (whatever the default)."""
    method = _tiny_method().eval()
    for block in (m for m in method.modules() if isinstance(m, WindowAttention)):
        block.impl = "grouped"
    images = torch.randn(4, 3, 32, 32)
    mask = method.draw_mask()
    changed = images.clone()
    changed[3] = torch.randn(3, 32, 32)  # the partner of sample 0
    with torch.no_grad():
        a, b = method.forward_encoder(images, mask), method.forward_encoder(changed, mask)
    own = mask.flatten() == 0
    assert (a[0][own] - b[0][own]).abs().max().item() == 0.0


def test_grouped_bf16_autocast_is_finite():
    grouped, official = _pair()
    groups = torch.zeros(1, 8, 8, dtype=torch.long)
    groups[0, :4, :4] = -1
    groups[0, 4:, 4:] = 1
    mask = WindowGroupMask.from_groups(groups, 4)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = grouped(x, mask)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(grouped(x, mask).float(), official(x, mask).float(), rtol=0.05, atol=0.05)


def test_bound_is_refused_outside_the_benchmark_and_passes_v_through():
    with pytest.raises(ValueError, match="cost floor"):
        set_attention_impl("bound")
    assert get_attention_impl() != "bound"
    attn = WindowAttention(16, 4, 2, impl="bound")
    x = torch.randn(2, 4, 16, 16)  # [B, nW, N, C]
    mask = WindowGroupMask.from_groups(torch.randint(0, 2, (1, 8, 8)), 4)
    expected = attn.proj(attn.qkv(x)[..., 32:])
    torch.testing.assert_close(attn(x, mask), expected, rtol=0, atol=0)
    attn(x.requires_grad_(), mask).sum().backward()
    assert attn.qkv.weight.grad[:32].abs().sum() == 0  # q and k are not used
