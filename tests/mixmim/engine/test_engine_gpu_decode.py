"""Pre-training with ``data.decode=gpu`` through the stage runner and the Trainer, on the CPU device
(``MIXMIM_DECODE_ON_CPU=1``: ``decode_jpeg`` decodes CPU tensors with libjpeg): the CPU path's crop boxes and
flips, pixels within the stated tolerance of the CPU path's, exact resume, and every refusal."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from standin_method import TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config
from torchvision import transforms as T

from mixmim.config import ConfigError, apply_overrides, validate
from mixmim.data import build_loader, build_pretrain_set
from mixmim.data.gpu_decode import CPU_OVERRIDE_ENV, DecodeDeviceError, EncodedBatch, NotJpegError
from mixmim.data.sampler import ResumableSampler
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.distributed import init_distributed
from mixmim.engine.rng import seed_everything
from mixmim.engine.trainer import Trainer
from mixmim.pretrain.task import STAGE, PretrainTask, pretrain
from mixmim.runs.rundir import stage_dir

pytestmark = pytest.mark.usefixtures("one_thread")

# Pixels of the GPU path on the CPU device (torchvision's libjpeg decode and tensor colour kernels, torch's
# antialiased resize on floats) against the CPU path's (Pillow's decode, colour and resize on uint8), in [0, 1]
# units, over the 48 crops at 16 px of the first test below (the jpeg_root fixture of tests/conftest.py; it prints
# them with -s): no jitter: mean 0.0014, 99th percentile 0.0116, max 0.0407 (the checkerboard's edges); BEiT's
# jitter 0.4: mean 0.0015, p99 0.0064, max 0.0591. The same crops flipped are off by 0.27 / 0.23 on average (and
# the jittered crops with the GPU path's jitter left out, measured once over the fixture's 24 images: 0.095).
# nvJPEG on CUDA is not measured here (tests/gpu/test_decode_on_device.py bounds it).
MEAN_TOL, MAX_TOL = 0.005, 0.08
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)  # ImageNet's: normalised -> [0, 1] units


class RecordingAutoencoder(TinyMaskedAutoencoder):
    """The stand-in method, keeping every batch it is given."""

    def __init__(self) -> None:
        super().__init__(img_size=IMG)
        self.seen: list[torch.Tensor] = []

    def forward(self, images, mask=None):
        self.seen.append(images.detach().clone())
        return super().forward(images, mask)


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setenv(CPU_OVERRIDE_ENV, "1")


def _config(root, decode: str, **overrides):
    return tiny_config(**{"data.dataset": "folder", "data.root": str(root), "data.max_train_images": 0,
                          "data.decode": decode, "pretrain.epochs": 2, "pretrain.batch_size": 8, **overrides})


def _trainer(cfg, run_dir) -> Trainer:
    """The Trainer of the pre-training stage without the stage runner (which would skip a finished run)."""
    seed_everything(cfg.seed)  # as the stage runner does: the same initial weights in every run
    method = TinyMaskedAutoencoder(img_size=IMG)
    env, device = init_distributed(), torch.device("cpu")
    task = PretrainTask(method, build_pretrain_set(cfg.data, IMG), cfg, run_dir, env, device)
    return Trainer(task, cfg.seed, stage_dir(run_dir, STAGE), "run0", env, device)


@pytest.mark.parametrize("jitter", [0.0, 0.4])  # 0.4: BEiT's colour jitter, drawn before the crop on both paths
def test_pretraining_decodes_on_the_device_with_the_cpu_paths_boxes_and_close_pixels(
        jitter, jpeg_root, on_cpu, tmp_path, monkeypatch):  # fmt: skip
    """Both paths through the stage: the same crop boxes in the same order, pixels within the tolerance."""
    boxes: dict[str, list] = {"cpu": [], "gpu": []}
    original = T.RandomResizedCrop.get_params
    seen = {}
    for decode in ("cpu", "gpu"):
        def spy(img, scale, ratio, record=boxes[decode]):
            record.append(original(img, scale, ratio))
            return record[-1]

        monkeypatch.setattr(T.RandomResizedCrop, "get_params", staticmethod(spy))
        method, cfg = RecordingAutoencoder(), _config(jpeg_root, decode, **{"data.color_jitter": jitter})
        result = pretrain(method, build_pretrain_set(cfg.data, IMG), cfg, tmp_path / decode)
        assert result["metrics"]["steps"] == 6 and result["data_root"] == str(jpeg_root)
        seen[decode] = torch.cat(method.seen) * STD  # [48, 3, 16, 16] in [0, 1] units
    assert len(boxes["cpu"]) == 48 and boxes["gpu"] == boxes["cpu"]
    diff = (seen["gpu"] - seen["cpu"]).abs()
    flipped = (seen["gpu"].flip(-1) - seen["cpu"]).abs().mean()
    print(f"jitter {jitter}: GPU path on the CPU device vs the CPU path, [0, 1] units: mean {diff.mean():.4f}, p99 "
          f"{diff.flatten().quantile(0.99):.4f}, max {diff.max():.4f}; flipped: mean {flipped:.4f}")  # quoted in docs
    assert diff.mean() < MEAN_TOL and diff.max() < MAX_TOL, (diff.mean(), diff.max())
    assert flipped > 0.1  # the test can tell a wrong flip


def test_workers_collate_encoded_batches_with_the_cpu_paths_crops(jpeg_root, on_cpu):
    """One loader worker per path, seeded alike: the batches decode to the CPU path's crops (within tolerance)."""
    cfg = _config(jpeg_root, "gpu")
    batches = {}
    for decode in ("cpu", "gpu"):
        dataset = build_pretrain_set(_config(jpeg_root, decode).data, IMG)
        sampler = ResumableSampler(dataset, 1, 0, shuffle=True, seed=cfg.seed, batch_size=8)
        loader = build_loader(dataset, 8, sampler, num_workers=1, seed=5, collate_fn=getattr(dataset, "collate", None))
        batches[decode] = next(iter(loader))
    encoded, labels, corrupt = batches["gpu"]
    assert isinstance(encoded, EncodedBatch) and len(encoded) == 8 and corrupt.tolist() == [0] * 8
    assert torch.equal(labels, batches["cpu"][1])
    diff = ((encoded.decode("cpu") - batches["cpu"][0]) * STD).abs()
    assert diff.mean() < MEAN_TOL and diff.max() < MAX_TOL


def test_resume_is_exact_with_gpu_decode(jpeg_root, on_cpu, tmp_path):
    """Stopped after 4 of 6 steps (mid-epoch) and resumed: bitwise the weights of an uninterrupted run."""
    def run(folder, max_steps):
        _trainer(_config(jpeg_root, "gpu", **{"pretrain.max_steps": max_steps}), tmp_path / folder).run()
        return ckpt_io.load_checkpoint(stage_dir(tmp_path / folder, STAGE) / ckpt_io.LAST)

    whole = run("whole", 6)
    run("resumed", 4)
    resumed = run("resumed", 6)
    assert resumed["position"] == whole["position"]
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_gpu_decode_without_cuda_is_refused_naming_the_fix(jpeg_root, monkeypatch, tmp_path):
    monkeypatch.delenv(CPU_OVERRIDE_ENV, raising=False)
    with pytest.raises(DecodeDeviceError, match=f"runs on cpu: pass --set data.decode=cpu .*{CPU_OVERRIDE_ENV}=1"):
        _trainer(_config(jpeg_root, "gpu"), tmp_path)


@pytest.mark.parametrize("overrides, match", [
    ({"data.dataset": "digits", "data.root": ""}, "'data.dataset' is 'digits' .*not JPEG.*data.dataset=folder"),
    ({"stages": ["pretrain", "finetune"]}, "cannot serve the finetune stage: .*RandAugment.*--force-config"),
])  # fmt: skip
def test_combinations_gpu_decode_cannot_serve_are_refused(jpeg_root, overrides, match):
    cfg = _config(jpeg_root, "cpu", **overrides)
    validate(cfg)  # the CPU path takes them all
    with pytest.raises(ConfigError, match=match):
        apply_overrides(cfg, {"data.decode": "gpu"})
    with pytest.raises(ConfigError, match="bad value 'nvjpeg' for key 'data.decode': allowed values are cpu, gpu"):
        apply_overrides(cfg, {"data.decode": "nvjpeg"})


def test_a_png_in_the_folder_is_refused_naming_it(tmp_path, on_cpu):
    (tmp_path / "train" / "c0").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "train" / "c0" / "a.png")
    dataset = build_pretrain_set(_config(tmp_path, "gpu").data, IMG)
    with pytest.raises(NotJpegError, match="a.png' is PNG.*data.decode=cpu"):
        dataset[0]
