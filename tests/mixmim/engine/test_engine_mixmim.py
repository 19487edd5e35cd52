"""The engine trains the real MixMIM method (mixmim_tiny_32) on the built-in digits."""

from __future__ import annotations

import math

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.config import RunConfig, apply_overrides
from mixmim.data import build_dataset, pretrain_transform
from mixmim.engine import load_encoder_state
from mixmim.pretrain.method import MixMIM
from mixmim.pretrain.task import pretrain
from mixmim.runs.rundir import read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretrain_runs_mixmim_and_exports_a_loadable_encoder(tmp_path):
    cfg = apply_overrides(RunConfig(), {"data.max_train_images": 64, "pretrain.batch_size": 16, "pretrain.epochs": 2,
                                        "pretrain.warmup_epochs": 1, "pretrain.blr": 1e-2})  # fmt: skip
    torch.manual_seed(0)
    method = MixMIM(create_backbone("mixmim_tiny_32", num_classes=0), decoder_dim=32, decoder_depth=1, decoder_heads=2)
    dataset = build_dataset(cfg.data, "train", pretrain_transform(32, cfg.data.crop_min_scale))
    result = pretrain(method, dataset, cfg, tmp_path, log_every=1)
    losses = [r["loss"] for r in read_jsonl(tmp_path / "pretrain" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert result["metrics"]["nonfinite_events"] == 0
    encoder = create_backbone("mixmim_tiny_32", num_classes=0)
    encoder.load_state_dict(load_encoder_state(tmp_path / "pretrain" / "encoder.pth"), strict=True)
    assert torch.equal(encoder.patch_embed.proj.weight, method.encoder.patch_embed.proj.weight.cpu())
