"""Padding-exact hierarchical features: tokens added by padding never take part in attention or merging."""

from __future__ import annotations

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.transfer.adapter import build_adapter


def _canvas(img: torch.Tensor, other: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A zero-padded batch [2, 3, *size]: ``img`` and ``other`` in its top-left corners."""
    canvas = torch.zeros(2, 3, *size)
    canvas[0, :, : img.shape[2], : img.shape[3]] = img[0]
    canvas[1, :, : other.shape[2], : other.shape[3]] = other[0]
    return canvas


@pytest.mark.parametrize("global_blocks", [(), (1, 2, 3)])  # windows only; global blocks in stages 2-3
def test_stage_maps_of_an_image_equal_those_of_the_image_padded_in_a_batch(global_blocks):
    torch.manual_seed(0)
    model = create_backbone("mixmim_tiny_32", num_classes=0, img_size=64, global_blocks=global_blocks).eval()
    img, other = torch.randn(1, 3, 44, 36), torch.randn(1, 3, 20, 60)  # odd grids: windows and merging pad
    canvas = _canvas(img, other, (64, 64))
    with torch.no_grad():
        own = model.forward_pyramid(img)
        padded = model.forward_pyramid(canvas, valid=torch.tensor([[44, 36], [20, 60]]))
        unmasked = model.forward_pyramid(canvas)
    for o, p, u in zip(own, padded, unmasked):
        h, w = o.shape[2:]
        torch.testing.assert_close(p[:1, :, :h, :w], o, rtol=1e-4, atol=1e-5)
        assert (p[:1, :, h:].abs().sum() + p[:1, :, :, w:].abs().sum()) == 0  # padding stays zero
        assert ((u[:1, :, :h, :w] - o).norm() / o.norm()) > 1e-2  # without the sizes the padding is content
    with torch.no_grad():  # the other image too, and a single padded image
        torch.testing.assert_close(padded[2][1:, :, :3, :8], model.forward_pyramid(other)[2], rtol=1e-4, atol=1e-5)


def test_no_mask_without_padding_and_window_padding_is_masked():
    model = create_backbone("mixmim_tiny_32", num_classes=0, img_size=64)
    stage = model.layers[0]
    assert stage.group_mask(None, 16, 16, window=4) is None  # whole windows: the unmasked fast path
    mask = stage.group_mask(None, 15, 14, window=4)
    assert mask is not None and not mask.allowed[0, -1, 0, :, -1].any()  # no query sees a padded key


def test_adapter_stage_features_do_not_depend_on_batch_padding():
    torch.manual_seed(0)
    adapter = build_adapter("mixmim_tiny_32", 64).eval()  # window_global: global blocks padded to 64 px
    img, other = torch.randn(1, 3, 40, 24), torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        own = adapter(img)  # padded by the adapter itself to 40x32 (size_divisibility 8)
        adapter.set_image_sizes([(40, 24), (64, 48)])
        batch = adapter(_canvas(img, other, (64, 48)))
    for name, o in own.items():
        h, w = -(-40 // adapter.out_strides[name]), -(-24 // adapter.out_strides[name])
        torch.testing.assert_close(batch[name][:1, :, :h, :w], o[:, :, :h, :w], rtol=1e-4, atol=1e-4)


def test_torchvision_engine_passes_each_image_size_to_the_adapter():
    from mixmim.transfer.torchvision_model import build_maskrcnn

    adapter = build_adapter("mixmim_tiny_32", 64)
    model = build_maskrcnn(adapter, num_classes=2, img_size=64, heads="compact").eval()
    images = [torch.rand(3, 64, 32), torch.rand(3, 48, 64)]  # resized to fit 64 px, then padded to one batch
    batch, _ = model.transform(images)
    assert adapter._image_sizes.tolist() == [list(s) for s in batch.image_sizes] == [[64, 32], [48, 64]]
    with torch.no_grad():
        model(images)
    assert adapter._image_sizes is None  # used by the backbone's forward
