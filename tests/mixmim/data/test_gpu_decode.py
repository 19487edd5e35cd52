"""The GPU decode path (``mixmim.data.gpu_decode``) on CPU tensors: the CPU path's seeded geometry, close pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixmim.bench import benchmark_gpu_decode
from mixmim.data import pretrain_transform
from mixmim.data.folder import CorruptImageError, load_rgb
from mixmim.data.gpu_decode import EncodedImages, NotJpegError
from mixmim.data.transforms import resized_crop_class

SIZES = [(64, 48), (40, 72), (96, 96)]  # (width, height): landscape, portrait, square
IMG = 32


@pytest.fixture
def jpegs(tmp_path):
    """Three JPEG files of structured content (a wrong box or flip changes the crop a lot)."""
    samples = []
    for i, (w, h) in enumerate(SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx * 255 // w, yy * 255 // h, ((xx // 8 + yy // 8) % 2) * 255], -1).astype(np.uint8)
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rgb).save(path, quality=95)
        samples.append((str(path), i))
    return samples


def _cpu_path(samples, seed, crop="torchvision"):
    """The CPU path's output per image and the crop boxes it drew (``get_params`` observed, not re-implemented)."""
    crop_class = resized_crop_class(crop)
    boxes, original = [], crop_class.get_params

    def spy(img, scale, ratio):
        box = original(img, scale, ratio)
        boxes.append(box)
        return box

    transform = pretrain_transform(IMG, crop=crop)
    torch.manual_seed(seed)
    crop_class.get_params = staticmethod(spy)
    try:
        images = [transform(load_rgb(path)) for path, _ in samples]
    finally:
        crop_class.get_params = staticmethod(original)
    return torch.stack(images), boxes


@pytest.mark.parametrize("crop", ["torchvision", "mae"])  # linprobe.crop: MAE's probe draws its own boxes
def test_workers_draw_the_cpu_paths_crop_boxes_and_the_device_crops_alike(jpegs, crop):
    cpu_images, cpu_boxes = _cpu_path(jpegs, seed=3, crop=crop)
    torch.manual_seed(3)
    dataset = EncodedImages(jpegs, IMG, crop=crop)
    encoded, labels, corrupt = dataset.collate([dataset[i] for i in range(len(jpegs))])
    assert [tuple(g[:4]) for g in encoded.geometry.tolist()] == [tuple(b) for b in cpu_boxes]
    assert labels.tolist() == [0, 1, 2] and corrupt.tolist() == [0, 0, 0]
    assert encoded.paths == [path for path, _ in jpegs]
    images = encoded.decode("cpu")
    assert images.shape == (3, 3, IMG, IMG) and images.dtype == torch.float32
    # close to Pillow's bicubic (uint8, its own antialias); a wrong flip or box is off by far more
    assert (images - cpu_images).abs().mean() < 0.05
    assert (images.flip(-1) - cpu_images).abs().mean() > 0.3


def test_other_formats_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(NotJpegError, match="a.png"):
        EncodedImages([(str(path), 0)], IMG)[0]


def test_gpu_decode_benchmark_counts_images_on_the_cpu_device(jpegs):
    stats = benchmark_gpu_decode(jpegs, IMG, workers=0, batches=1, device="cpu", batch_size=2)
    assert stats.decode == "gpu" and stats.images_per_s > 0


def test_unreadable_files_follow_on_corrupt_and_a_bad_body_is_named_at_decode(jpegs, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    samples = [(str(bad), 0), *jpegs]
    _, _, _, _, corrupt, path = EncodedImages(samples, IMG, on_corrupt="skip")[0]
    assert corrupt == 1 and path == jpegs[0][0]  # the next readable file in its place, flagged
    with pytest.raises(CorruptImageError, match="bad.jpg.*data.on_corrupt=skip"):
        EncodedImages(samples, IMG, on_corrupt="fail")[0]
    truncated = tmp_path / "truncated.jpg"  # a JPEG header that reads, a body that does not decode
    whole = Path(jpegs[0][0]).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    dataset = EncodedImages([jpegs[1], (str(truncated), 0)], IMG)
    encoded, _, _ = dataset.collate([dataset[0], dataset[1]])
    with pytest.raises(CorruptImageError, match="cannot decode '.*truncated.jpg' on cpu"):
        encoded.decode("cpu")
