"""A run's chain: the engine pre-trains MixMIM, then the evaluations load exactly its encoder (init=pretrain)."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import BACKBONE, tiny_config

from mixmim.backbones import create_backbone
from mixmim.data import build_dataset, pretrain_transform
from mixmim.evaluate import build_eval_backbone, run_knn
from mixmim.pretrain.method import MixMIM
from mixmim.pretrain.task import pretrain
from mixmim.runs.rundir import read_json


@pytest.mark.slow
def test_evaluations_use_the_encoder_pretraining_wrote(tmp_path):
    one_epoch = {"pretrain.epochs": 1, "pretrain.warmup_epochs": 0, "pretrain.batch_size": 16}
    cfg = tiny_config(one_epoch, init="pretrain")
    torch.manual_seed(0)
    method = MixMIM(create_backbone(BACKBONE, num_classes=0), decoder_dim=32, decoder_depth=1, decoder_heads=2)
    dataset = build_dataset(cfg.data, "train", pretrain_transform(32, cfg.data.crop_min_scale))
    assert pretrain(method, dataset, cfg, tmp_path)["steps"] == 4

    model, source = build_eval_backbone(cfg, tmp_path, num_classes=0)
    assert source.path == tmp_path / "pretrain" / "encoder.pth"
    loaded = model.state_dict()
    for key, value in method.encoder.state_dict().items():
        assert torch.equal(loaded[key], value), key

    assert run_knn(cfg, tmp_path)["init_path"] == str(source.path)  # (the linear probe loads it the same way)
    assert set(read_json(tmp_path / "manifest.json")["stages"]) == {"pretrain", "knn"}
