"""Window attention: the SDPA path equals the official additive -1e30 formulation; no NaN ever."""

import pytest
import torch

from mixmim.backbones.attention import WindowAttention, relative_position_index
from mixmim.backbones.groups import WindowGroupMask, upsample_groups, window_partition, window_reverse


def _pair(window=4, heads=2, dim=16):
    sdpa = WindowAttention(dim, window, heads, impl="sdpa")
    official = WindowAttention(dim, window, heads, impl="official")
    official.load_state_dict(sdpa.state_dict())
    return sdpa, official


@pytest.mark.parametrize("shared", [True, False])
def test_sdpa_equals_official_with_groups(shared):
    sdpa, official = _pair()
    x = torch.randn(3, 4, 16, 16)  # [B, nW, N, C]: 8x8 tokens in 4x4 windows
    groups = torch.randint(0, 2, (1 if shared else 3, 8, 8))
    mask = WindowGroupMask.from_groups(groups, 4)
    torch.testing.assert_close(sdpa(x, mask), official(x, mask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa(x), official(x), rtol=1e-5, atol=1e-5)


def test_query_without_allowed_key_outputs_zero_not_nan():
    sdpa, official = _pair()
    groups = torch.zeros(1, 8, 8, dtype=torch.long)
    groups[0, :4, :4] = -1  # a whole window of excluded tokens: its queries have no allowed key
    groups[0, 4, 4] = -1
    mask = WindowGroupMask.from_groups(groups, 4)
    x = torch.randn(2, 4, 16, 16)
    for attn in (sdpa, official):
        inner = attn._sdpa if attn is sdpa else attn._official
        out = attn(x, mask)
        assert torch.isfinite(out).all()
        # excluded queries: zero attention output, so only proj's bias remains
        assert torch.allclose(out[:, 0], attn.proj.bias.expand(2, 16, 16), atol=1e-6)
        del inner
    torch.testing.assert_close(sdpa(x, mask), official(x, mask), rtol=1e-5, atol=1e-5)


def test_excluded_keys_are_never_attended():
    sdpa, _ = _pair()
    groups = torch.zeros(1, 4, 4, dtype=torch.long)
    groups[0, 0, 0] = -1
    mask = WindowGroupMask.from_groups(groups, 4)
    x = torch.randn(1, 1, 16, 16)
    y = x.clone()
    y[0, 0, 0] += 100.0  # change only the excluded token
    out_x, out_y = sdpa(x, mask), sdpa(y, mask)
    assert torch.equal(out_x[0, 0, 1:], out_y[0, 0, 1:])


def test_relative_position_index_matches_swin():
    idx = relative_position_index(2)
    assert idx.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]


def test_window_partition_roundtrip_and_group_upsampling():
    x = torch.randn(2, 8, 12, 3)
    assert torch.equal(window_reverse(window_partition(x, 4), 4, 8, 12), x)
    g = torch.tensor([[[0, 1], [1, 0]]])
    assert upsample_groups(g, (4, 4)).tolist() == [[[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]]
    with pytest.raises(ValueError, match="does not divide"):
        upsample_groups(g, (5, 5))


@pytest.mark.parametrize("size", [(6, 8), (7, 5)])
def test_patch_merging_equals_the_official_strided_concatenation(size):
    """One permute instead of the official four strided slices: the same values, in the same order."""
    import torch.nn.functional as F

    from mixmim.backbones.hierarchical import PatchMerging

    merge = PatchMerging(3)
    x = torch.randn(2, *size, 3)
    h, w = size
    padded = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    official = torch.cat([padded[:, 0::2, 0::2], padded[:, 1::2, 0::2], padded[:, 0::2, 1::2],
                          padded[:, 1::2, 1::2]], dim=-1)
    assert torch.equal(merge(x), merge.reduction(merge.norm(official)))
