"""The ``coco`` stage with the built-in engine end to end, idempotence, resume, and the experiment settings."""

from __future__ import annotations

import pytest
import torch
from coco_helpers import same_metrics

import mixmim.transfer.detectron2 as d2_engine
from mixmim.config import RunConfig, apply_overrides
from mixmim.engine.checkpoint import load_checkpoint
from mixmim.engine.distributed import DistEnv
from mixmim.engine.trainer import Trainer
from mixmim.runs.rundir import read_json, read_jsonl
from mixmim.transfer import (
    PAPER_NUMBERS,
    build_adapter,
    coco_debug_overrides,
    coco_paper_overrides,
    run_coco,
)
from mixmim.transfer.coco_data import CocoDetectionDataset, coco_splits
from mixmim.transfer.detection_task import DetectionTask
from mixmim.transfer.evaluation import metric_names
from mixmim.transfer.stage import builtin_spec
from mixmim.transfer.tiny_coco import generate_tiny_coco
from mixmim.transfer.torchvision_model import build_maskrcnn
from mixmim.weights.init_source import InitWeightsError

STEPS = 3


def _cfg(**extra) -> RunConfig:
    overrides = {**coco_debug_overrides(), "model.backbone": "mixmim_tiny_32", "init": "pretrain",
                 "coco.max_steps": STEPS, "coco.batch_size": 2, **extra}
    return apply_overrides(RunConfig(experiment="t", name="r"), overrides)


@pytest.mark.slow
def test_torchvision_engine_end_to_end_and_idempotent(pretrained_run, monkeypatch):
    result = run_coco(_cfg(), pretrained_run)
    on_disk = read_json(pretrained_run / "coco" / "result.json")
    assert on_disk["stage"] == "coco" and on_disk["status"] == "done" and on_disk["engine"] == "torchvision"
    assert set(metric_names()) <= set(on_disk["metrics"])
    for key in ("ap_box", "ap_box50", "ap_box75", "ap_mask", "ap_mask50", "ap_mask75"):
        assert 0.0 <= on_disk["metrics"][key] <= 100.0, key
    assert on_disk["steps"] == STEPS and on_disk["effective_batch"] == 2 and on_disk["lr"] == 1e-3
    assert on_disk["init"].endswith("pretrain/encoder.pth") and on_disk["images"] == {"train": 48, "val": 16}
    assert result["metrics"]["ap_box"] == on_disk["metrics"]["ap_box"]
    manifest = read_json(pretrained_run / "manifest.json")
    assert manifest["stages"]["coco"]["engine"] == "torchvision"
    assert (pretrained_run / "coco" / "checkpoint-last.pth").is_file()
    records = [r for r in read_jsonl(pretrained_run / "coco" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [STEPS]  # LOG_EVERY 10: the task's tail record, the Trainer's record
    assert records[0]["lr"] > 0 and records[0]["images_per_s"] > 0

    def no_work(*args, **kwargs):
        raise AssertionError("a done stage must not train again")

    monkeypatch.setattr(Trainer, "run", no_work)
    assert run_coco(_cfg(), pretrained_run)["metrics"] == on_disk["metrics"]


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(tmp_path):
    """Stop after 1 step, resume to 3: the weights equal those of 3 steps in one go (in process; the SIGKILL
    tests are in ``test_coco_resume.py``)."""
    root = generate_tiny_coco(tmp_path / "data", builtin_spec(64))
    splits = coco_splits(root)
    train_set = CocoDetectionDataset(splits["train"], train=True)
    cfg = _cfg(**{"coco.epochs": 1}).coco  # batch 2: 24 steps per epoch

    def train(path, max_steps):
        torch.manual_seed(0)
        model = build_maskrcnn(build_adapter("mixmim_tiny_32", 64, out_channels=64), 3, 64, heads="compact")
        cfg.max_steps = max_steps
        task = DetectionTask(model, model.backbone.body.encoder, cfg, train_set, splits["val"], 0, torch.device("cpu"))
        return Trainer(task, 0, path, "t", DistEnv(), torch.device("cpu")).run()

    straight = train(tmp_path / "a", 3)
    train(tmp_path / "b", 1)
    resumed = train(tmp_path / "b", 3)
    assert resumed["steps"] == straight["steps"] == 3 and same_metrics(resumed["metrics"], straight["metrics"])
    a, b = (load_checkpoint(tmp_path / name / "checkpoint-last.pth")["model"] for name in "ab")
    for name, value in a.items():
        assert torch.equal(value, b[name]), name


def test_detectron2_missing_fails_at_start_with_install_hint(pretrained_run, monkeypatch):
    monkeypatch.setattr(d2_engine, "detectron2_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install .*detectron2") as err:
        run_coco(_cfg(**{"coco.engine": "detectron2"}), pretrained_run)
    assert "setuptools<81" in str(err.value) and "coco.engine=torchvision" in str(err.value)
    assert not (pretrained_run / "coco" / "data").exists()  # nothing was done


def test_detectron2_engine_packages_are_checked_at_start(pretrained_run, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(d2_engine, "detectron2_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("shapely", "hydra")
                        else object() if name in d2_engine.ENGINE_PACKAGES else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"needs shapely, hydra-core, not installed: pip install shapely hydra-core"):
        run_coco(_cfg(**{"coco.engine": "detectron2"}), pretrained_run)
    assert not (pretrained_run / "coco" / "data").exists()


def test_missing_pretrained_encoder_fails_at_start(tmp_path):
    with pytest.raises(InitWeightsError, match=r"pretrain/encoder\.pth does not exist: run the 'pretrain' stage"):
        run_coco(_cfg(), tmp_path)
    assert not (tmp_path / "coco").exists()


def test_bad_options_fail_at_start(pretrained_run):
    with pytest.raises(ValueError, match="'mmdet' for key 'coco.engine'"):
        _cfg(**{"coco.engine": "mmdet"})  # refused when the config is built
    for key, value in (("engine", "mmdet"), ("attention", "shifted"), ("img_size", 16)):
        cfg = _cfg()
        setattr(cfg.coco, key, value)  # set directly, past the config checks: the stage runner still refuses it
        with pytest.raises(ValueError, match=f"for key 'coco.{key}'"):
            run_coco(cfg, pretrained_run)


def test_experiment_overrides_apply_to_run_config():
    debug = apply_overrides(RunConfig(), coco_debug_overrides())
    assert debug.coco.engine == "torchvision" and debug.coco.root == "" and debug.coco.heads == "compact"
    for backbone in ("mixmim_base", "mixmim_large", "mixmim_vit_base_patch16", "mixmim_vit_large_patch16"):
        for epochs in (100, 50):
            cfg = apply_overrides(RunConfig(), coco_paper_overrides(backbone, epochs))
            assert cfg.coco.engine == "detectron2" and cfg.coco.epochs == epochs and cfg.coco.batch_size == 64
            assert cfg.coco.blr * cfg.coco.batch_size / 64 == pytest.approx(1e-4) and cfg.coco.img_size == 1024
    assert coco_paper_overrides("mixmim_large")["coco.drop_path"] == 0.4
    with pytest.raises(KeyError, match="no COCO recipe"):
        coco_paper_overrides("mixmim_tiny_32")
    with pytest.raises(ValueError, match="epochs"):
        coco_paper_overrides("mixmim_base", 36)
    assert PAPER_NUMBERS["mixmim_base"][:2] == (52.2, 46.5) and PAPER_NUMBERS["mixmim_large"][:2] == (54.1, 48.1)
    assert PAPER_NUMBERS["beit_large"][:2] == (53.3, 47.1)


@pytest.mark.parametrize("backbone", ["mixmim_tiny_32", "mixmim_vit_tiny_patch4_32"])
def test_torchvision_maskrcnn_on_both_backbone_kinds(backbone):
    torch.manual_seed(0)
    adapter = build_adapter(backbone, 64, out_channels=64)
    model = build_maskrcnn(adapter, num_classes=3, img_size=64, heads="compact")
    # tiny backbones: strides 2-8 plus the pooled 16 (hierarchical), 1-8 plus 16 (ViT with patch 4)
    assert model.backbone.out_features[-1] == "p4"
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[:, 8:30, 10:40] = 1
    target = {"boxes": torch.tensor([[10.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([2]), "masks": mask}
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 50, 70)], [target, target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert out[0]["masks"].shape[1:] == (1, 64, 64)
