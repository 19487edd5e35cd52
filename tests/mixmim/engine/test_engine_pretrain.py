"""The pre-training loop: learning, results, skip-if-done, max_steps, non-finite guard, corrupt images,
resuming past a truncated checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from standin_method import TinyEncoder, TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config, tiny_dataset

from mixmim.data import build_dataset, pretrain_transform
from mixmim.engine import NonFiniteLossError, load_encoder_state
from mixmim.pretrain.task import pretrain
from mixmim.runs.rundir import read_json, read_jsonl, read_result

pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_decreases_on_the_builtin_digits(finished_run):
    run_dir, _ = finished_run
    losses = [r["loss"] for r in read_jsonl(run_dir / "pretrain" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 16  # 32 steps, a record every 2
    assert sum(losses[-4:]) / 4 < 0.85 * sum(losses[:4]) / 4


def test_result_holds_the_recipe_and_metrics(finished_run):
    run_dir, result = finished_run
    assert read_result(run_dir, "pretrain") == result
    assert result["status"] == "done" and result["stage"] == "pretrain"
    metrics = result["metrics"]
    for key in ("loss", "steps", "epochs", "effective_batch", "lr", "blr", "precision", "world_size",
                "wall_time_s", "gpu_hours", "images_per_s", "nonfinite_events", "corrupt_images"):  # fmt: skip
        assert key in metrics, key
    assert (metrics["steps"], metrics["epochs"], metrics["effective_batch"]) == (32, 4.0, 16)
    assert metrics["lr"] == pytest.approx(0.05 * 16 / 256) and metrics["precision"] == "fp32"
    assert metrics["nonfinite_events"] == 0 and metrics["corrupt_images"] == 0 and math.isfinite(metrics["loss"])
    files = {p.name for p in (run_dir / "pretrain").iterdir()}
    assert {"checkpoint-last.pth", "checkpoint-2.pth", "checkpoint-4.pth", "encoder.pth", "tb"} <= files
    TinyEncoder(IMG, num_classes=0).load_state_dict(
        load_encoder_state(run_dir / "pretrain" / "encoder.pth"), strict=True
    )


def test_manifest_has_the_run_and_stage_fields(finished_run):
    run_dir, result = finished_run
    manifest = read_json(run_dir / "manifest.json")
    assert {"experiment", "run", "seed", "git", "versions", "hardware", "world_size"} <= manifest.keys()
    assert {"commit", "dirty"} <= manifest["git"].keys()
    assert {"python", "torch", "timm", "cuda"} <= manifest["versions"].keys()
    stage = manifest["stages"]["pretrain"]
    for key in ("effective_batch", "lr", "blr", "lr_scale_base", "precision", "seed", "data_root",
                "data_fingerprint", "wall_time_s", "gpu_hours", "world_size", "epochs"):  # fmt: skip
        assert key in stage, key
    assert stage["data_root"] == "builtin:sklearn-digits" and len(stage["data_fingerprint"]) == 64
    assert stage["data_classes"] == 10 and stage["data_images"] == result["data_images"] > 0
    assert stage["wall_time_s"] == result["wall_time_s"] and stage["gpu_hours"] == 0.0


def test_a_finished_stage_is_skipped(finished_run):
    run_dir, result = finished_run
    method = TinyMaskedAutoencoder(img_size=IMG)
    cfg = tiny_config()
    assert pretrain(method, tiny_dataset(cfg), cfg, run_dir) == result
    assert method.calls == 0


def test_max_steps_stops_early_on_the_full_schedule(tmp_path):
    cfg = tiny_config(**{"pretrain.max_steps": 5})
    result = pretrain(TinyMaskedAutoencoder(img_size=IMG), tiny_dataset(cfg), cfg, tmp_path, log_every=1)
    assert result["steps"] == 5 and result["epochs"] == pytest.approx(5 / 8)
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "pretrain" / "metrics.jsonl") if "lr" in r]
    assert lrs == pytest.approx([result["lr"] * s / 8 for s in range(5)])  # warmup of the 4-epoch schedule


class SnapshotAtNaN(TinyMaskedAutoencoder):
    """Returns a NaN loss on the given forward calls and remembers its weights at that moment."""

    def forward(self, images, mask=None):
        out = super().forward(images, mask)
        if self.calls in self.nan_at_calls:
            self.snapshot = {k: v.clone() for k, v in self.state_dict().items()}
        return out


def test_nonfinite_loss_stops_naming_step_and_checkpoint(tmp_path):
    cfg = tiny_config(**{"pretrain.checkpoint_every_steps": 3, "pretrain.epochs": 1})
    method = SnapshotAtNaN(img_size=IMG)
    method.nan_at_calls = {8}
    with pytest.raises(NonFiniteLossError, match=r"step 8 .*checkpoint-last\.pth \(step 6\)"):
        pretrain(method, tiny_dataset(cfg), cfg, tmp_path)
    for key, value in method.state_dict().items():  # the update was not applied
        assert torch.equal(value, method.snapshot[key]), key
    events = [r for r in read_jsonl(tmp_path / "pretrain" / "metrics.jsonl") if r.get("event")]
    assert events == [{"event": "nonfinite_loss", "step": 8, "epoch": 0, "loss": None, "action": "stop",
                       "restored_step": 6}]  # fmt: skip
    assert read_result(tmp_path, "pretrain") is None


def test_nonfinite_loss_rolls_back_and_continues(tmp_path):
    cfg = tiny_config(**{"pretrain.nonfinite": "rollback", "pretrain.checkpoint_every_steps": 3, "pretrain.epochs": 2})
    method = TinyMaskedAutoencoder(img_size=IMG)
    method.nan_at_calls = {11}
    result = pretrain(method, tiny_dataset(cfg), cfg, tmp_path, log_every=1)
    assert result["metrics"]["nonfinite_events"] == 1 and math.isfinite(result["metrics"]["loss"])
    assert result["steps"] == 16 and method.calls == 16 + 2  # steps 10-11 ran twice (rolled back to step 9)
    records = read_jsonl(tmp_path / "pretrain" / "metrics.jsonl")
    assert [r["restored_step"] for r in records if r.get("event")] == [9]
    steps = [r["step"] for r in records if "loss" in r and "event" not in r]
    assert steps == list(range(1, 17))  # the rolled-back steps were logged once
    assert all(math.isfinite(p.sum().item()) for p in method.parameters())


def write_png(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (IMG, IMG), (value, value, value)).save(path)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = tmp_path / "data"
    for i in range(38):
        write_png(root / "train" / f"c{i % 2}" / f"{i}.png", 3 * i)
    (root / "train" / "c0" / "bad.png").write_bytes(b"not an image")
    (root / "train" / "c1" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    cfg = tiny_config(**{"data.dataset": "folder", "data.root": str(root), "data.max_train_images": 0,
                         "pretrain.epochs": 2, "pretrain.batch_size": 8})  # fmt: skip
    dataset = build_dataset(cfg.data, "train", pretrain_transform(IMG))
    result = pretrain(TinyMaskedAutoencoder(img_size=IMG), dataset, cfg, tmp_path / "run")
    assert result["metrics"]["corrupt_images"] == 2 and result["metrics"]["corrupt_reads"] == 4
    assert result["data_root"] == str(root)


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog):
    cfg = tiny_config()  # 4 epochs of 8 steps, checkpoint-2.pth and checkpoint-4.pth kept
    method = TinyMaskedAutoencoder(img_size=IMG)
    method.nan_at_calls = {20}  # stops in epoch 3: checkpoint-last.pth and checkpoint-2.pth hold step 16
    with pytest.raises(NonFiniteLossError):
        pretrain(method, tiny_dataset(cfg), cfg, tmp_path)
    last = tmp_path / "pretrain" / "checkpoint-last.pth"
    last.write_bytes(last.read_bytes()[:1000])
    method = TinyMaskedAutoencoder(img_size=IMG)
    result = pretrain(method, tiny_dataset(cfg), cfg, tmp_path)
    assert result["steps"] == 32 and method.calls == 16  # resumed at step 16, not from scratch
    assert "checkpoint-last.pth" in caplog.text and "resuming from checkpoint-2.pth" in caplog.text
