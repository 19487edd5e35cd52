"""Masks: exact counts, determinism under a seed, shapes."""

import pytest
import torch

from mixmim.pretrain.masking import block_mask, mix_mask, normalize_mask_arg, random_mask, upsample_mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio,expected", [(0.5, 24), (0.25, 12), (0.75, 36)])
def test_mix_mask_count_and_determinism(ratio, expected):
    m = mix_mask((7, 7), ratio, gen())
    assert m.shape == (7, 7) and int(m.sum()) == expected  # int(49 * ratio), as the official
    assert torch.equal(m, mix_mask((7, 7), ratio, gen()))
    assert not torch.equal(m, mix_mask((7, 7), ratio, gen(1)))


def test_random_mask_per_sample_count():
    m = random_mask(5, (14, 14), 0.75, gen())
    assert m.shape == (5, 14, 14) and m.dtype == torch.bool
    assert m.flatten(1).sum(1).tolist() == [147] * 5  # MAE keeps int(196 * 0.25) = 49
    assert not torch.equal(m[0], m[1])
    assert torch.equal(m, random_mask(5, (14, 14), 0.75, gen()))
    assert random_mask(1, (6, 6), 0.6, gen()).sum() == 22  # SimMIM: ceil(36 * 0.6)


def test_block_mask_is_blocky_and_exact_when_asked():
    m = block_mask((14, 14), 75, gen())
    assert 0 < int(m.sum()) <= 75
    exact = block_mask((7, 7), 24, gen(), exact=True)
    assert int(exact.sum()) == 24
    assert torch.equal(exact, block_mask((7, 7), 24, gen(), exact=True))
    # blocks: masked cells have more masked 4-neighbours than random cells would
    padded = torch.nn.functional.pad(m.float()[None, None], (1, 1, 1, 1))[0, 0]
    neighbours = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    assert neighbours[m].mean() > 4 * m.float().mean()


def test_upsample_and_mask_argument_forms():
    m = mix_mask((2, 2), 0.5, gen())
    up = upsample_mask(m, (4, 4))
    assert up.shape == (4, 4) and torch.equal(up[::2, ::2], m)
    for form in (m.flatten(), m.reshape(1, 4, 1), m):
        assert torch.equal(normalize_mask_arg(form, (2, 2)), m)
    with pytest.raises(ValueError, match="expected 4"):
        normalize_mask_arg(torch.zeros(5), (2, 2))
