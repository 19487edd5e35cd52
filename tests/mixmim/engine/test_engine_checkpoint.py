"""Checkpoints: atomic writes, weights_only loading, RNG round trips, encoder export."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from standin_method import TinyEncoder, TinyMaskedAutoencoder

from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.checkpoint import TrainPosition
from mixmim.engine.optim import build_adamw, pretrain_param_groups
from mixmim.engine.precision import grad_scaler
from mixmim.engine.rng import capture_rng_state, restore_rng_state, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-last.pth"
    ckpt_io.atomic_torch_save({"step": 1, "w": torch.arange(10.0)}, path)
    before = path.read_bytes()
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        real_save({"step": 2, "w": torch.zeros(1000)}, f)  # some bytes reach the temporary file...
        raise OSError("disk full")  # ...then the write fails

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        ckpt_io.atomic_torch_save({"step": 2}, path)
    assert path.read_bytes() == before
    assert ckpt_io.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-last.pth"]  # no temporary left


def test_partial_files_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / ".checkpoint-last-abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "checkpoint-last.pth").write_bytes(b"kept")
    removed = ckpt_io.remove_partial_checkpoints(tmp_path)
    assert [p.name for p in removed] == [".checkpoint-last-abc123.tmp"]
    assert (tmp_path / "checkpoint-last.pth").exists()


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(5)
    seed_everything(11)
    ckpt_io.atomic_torch_save({"rng": [capture_rng_state(generator)]}, tmp_path / "c.pth")

    def draw():
        return (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=generator))

    expected = draw()
    seed_everything(99)
    generator.manual_seed(0)
    restore_rng_state(ckpt_io.load_checkpoint(tmp_path / "c.pth")["rng"][0], generator)
    got = draw()
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def test_training_checkpoint_restores_model_optimizer_and_position(tmp_path):
    model = TinyMaskedAutoencoder()
    optimizer = build_adamw(pretrain_param_groups(model, 0.05), betas=(0.9, 0.95))
    model(torch.randn(4, 3, 16, 16))["loss"].backward()
    optimizer.param_groups[0]["lr"] = 1e-2
    optimizer.step()
    scaler = grad_scaler("fp32", torch.device("cpu"))
    position = TrainPosition(epoch=2, step_in_epoch=6, global_step=22)
    state = ckpt_io.training_checkpoint(model, optimizer, scaler, position, [], {"seed": 0}, {"images": 3.0})
    ckpt_io.atomic_torch_save(state, tmp_path / "c.pth")

    other = TinyMaskedAutoencoder()
    other_opt = build_adamw(pretrain_param_groups(other, 0.05), betas=(0.9, 0.95))
    loaded = ckpt_io.load_checkpoint(tmp_path / "c.pth")  # weights_only=True
    assert ckpt_io.restore_training_checkpoint(loaded, other, other_opt, scaler) == position
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    assert torch.equal(other_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="format"):
        ckpt_io.restore_training_checkpoint({**loaded, "format": 0}, other, other_opt, scaler)


def test_encoder_export_strips_the_prefix_and_loads_strictly(tmp_path):
    method = TinyMaskedAutoencoder()
    ckpt_io.save_encoder(method, tmp_path / "encoder.pth", meta={"step": 3})
    state = ckpt_io.load_encoder_state(tmp_path / "encoder.pth")
    TinyEncoder(num_classes=0).load_state_dict(state, strict=True)
    torch.save({"model": method.state_dict()}, tmp_path / "full.pth")  # a training-style checkpoint
    assert state.keys() == ckpt_io.load_encoder_state(tmp_path / "full.pth").keys()


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_names_the_broken_one(tmp_path, caplog):
    for name, step in (("checkpoint-2.pth", 2), ("checkpoint-4.pth", 4), ("checkpoint-last.pth", 5)):
        ckpt_io.atomic_torch_save({"step": step, "w": torch.arange(1000.0)}, tmp_path / name)
    assert ckpt_io.load_latest_checkpoint(tmp_path)[0]["step"] == 5
    for name in ("checkpoint-last.pth", "checkpoint-4.pth"):  # cut in half (a full disk, a bad copy)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    ckpt, path = ckpt_io.load_latest_checkpoint(tmp_path)
    assert ckpt["step"] == 2 and path.name == "checkpoint-2.pth"
    assert "checkpoint-last.pth, checkpoint-4.pth in" in caplog.text and "resuming from checkpoint-2.pth" in caplog.text
    (tmp_path / "checkpoint-2.pth").write_bytes(b"")
    with pytest.raises(ckpt_io.CheckpointFileError, match="no readable checkpoint .*checkpoint-last.pth"):
        ckpt_io.load_latest_checkpoint(tmp_path)
    assert ckpt_io.load_latest_checkpoint(tmp_path / "empty") is None


def test_load_errors_name_the_file_and_never_advise_weights_only_false(tmp_path):
    (tmp_path / "notes.pth").write_text("hello, not a checkpoint\n")
    with pytest.raises(ckpt_io.CheckpointFileError, match="notes.pth .*not a readable PyTorch checkpoint") as err:
        ckpt_io.load_checkpoint(tmp_path / "notes.pth")
    assert "weights_only=False" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt_io.load_checkpoint(tmp_path / "missing.pth")
