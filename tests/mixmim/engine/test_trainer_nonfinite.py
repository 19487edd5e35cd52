"""The non-finite guard when the host looks only at logging steps, epoch ends and before checkpoints: a NaN loss
between two reads skips its update and every later one on the device, and the guard acts at the next read,
naming the first bad step, before any record or checkpoint could hold it (fp32 and fp16 with a GradScaler)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from standin_method import TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config, tiny_dataset

from mixmim.engine import NonFiniteLossError
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine import recipe as recipe_module
from mixmim.pretrain.task import pretrain
from mixmim.runs.rundir import read_jsonl, read_result

pytestmark = pytest.mark.usefixtures("one_thread")


class SnapshotBeforeNaN(TinyMaskedAutoencoder):
    """NaN losses on ``nan_at_calls``; remembers its weights at forward call ``snapshot_at`` (default: the first NaN
    call), before that step's update."""

    snapshot_at = 0

    def forward(self, images, mask=None):
        out = super().forward(images, mask)
        if self.calls == (self.snapshot_at or min(self.nan_at_calls)):
            self.snapshot = {k: v.clone() for k, v in self.state_dict().items()}
        return out


def assert_weights_unchanged_since_snapshot(method: SnapshotBeforeNaN) -> None:
    for key, value in method.state_dict().items():
        assert torch.equal(value, method.snapshot[key]), key


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_nan_between_reads_is_skipped_and_stops_the_run_at_the_next_read(tmp_path, monkeypatch, precision):
    if precision == "fp16":  # the CPU runs fp16 autocast and a GradScaler too; the stage config refuses it there
        monkeypatch.setattr(recipe_module, "resolve_precision", lambda precision, device: "fp16")
    cfg = tiny_config(**{"pretrain.epochs": 1, "pretrain.accum_iter": 2})  # 4 steps of 2 micro-batches
    method = SnapshotBeforeNaN(img_size=IMG)
    method.nan_at_calls = {3}  # the first micro-batch of step 2; the host first looks at step 3
    with pytest.raises(NonFiniteLossError, match=r"at step 2 \(epoch 0, iteration 2\).*last\.pth \(step 0\)"):
        pretrain(method, tiny_dataset(cfg), cfg, tmp_path, log_every=3)
    assert method.calls == 6  # steps 2 and 3 ran on the device, and neither changed the weights
    assert_weights_unchanged_since_snapshot(method)
    records = read_jsonl(tmp_path / "pretrain" / "metrics.jsonl")
    assert records == [{"event": "nonfinite_loss", "step": 2, "epoch": 0, "loss": None, "action": "stop",
                        "restored_step": 0}]  # fmt: skip
    assert read_result(tmp_path, "pretrain") is None


def test_the_guard_acts_before_a_checkpoint_could_hold_a_bad_step(tmp_path):
    cfg = tiny_config(**{"pretrain.epochs": 1, "pretrain.checkpoint_every_steps": 3})
    method = SnapshotBeforeNaN(img_size=IMG)
    method.nan_at_calls = {5}  # no logging step before the checkpoint of step 6
    with pytest.raises(NonFiniteLossError, match=r"at step 5 \(epoch 0, iteration 4\).*last\.pth \(step 3\)"):
        pretrain(method, tiny_dataset(cfg), cfg, tmp_path, log_every=100)
    assert method.calls == 6
    assert_weights_unchanged_since_snapshot(method)
    saved = ckpt_io.load_checkpoint(tmp_path / "pretrain" / "checkpoint-last.pth")
    assert saved["position"]["global_step"] == 3


def test_a_rollback_between_reads_replays_from_the_last_checkpoint(tmp_path):
    cfg = tiny_config(**{"pretrain.epochs": 2, "pretrain.checkpoint_every_steps": 3, "pretrain.nonfinite": "rollback"})
    method = TinyMaskedAutoencoder(img_size=IMG)
    method.nan_at_calls = {5}
    result = pretrain(method, tiny_dataset(cfg), cfg, tmp_path, log_every=100)
    assert result["metrics"]["nonfinite_events"] == 1 and result["steps"] == 16
    assert method.calls == 16 + 3  # steps 4-6 ran twice: the bad step was found before the checkpoint of step 6
    events = [r for r in read_jsonl(tmp_path / "pretrain" / "metrics.jsonl") if r.get("event")]
    assert [(e["step"], e["restored_step"]) for e in events] == [(5, 3)]
    assert all(torch.isfinite(p).all() for p in method.parameters())


def _rank_with_nan_on_rank_1(rank: int, run_dir: str, port: int, results) -> None:
    """One of two Gloo ranks (a spawned process): rank 1's 3rd forward is NaN (step 2 of 2 per epoch)."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    cfg = tiny_config(**{"pretrain.epochs": 1, "pretrain.accum_iter": 2})  # 64 images a rank: 2 steps
    method = SnapshotBeforeNaN(img_size=IMG)
    method.nan_at_calls = {3} if rank == 1 else set()
    method.snapshot_at = 3
    try:
        pretrain(method, tiny_dataset(cfg), cfg, run_dir, log_every=100)
        results.put((rank, "finished", False))
    except NonFiniteLossError as error:
        unchanged = all(torch.equal(v, method.snapshot[k]) for k, v in method.state_dict().items())
        results.put((rank, str(error), unchanged))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_a_nan_on_one_rank_skips_and_stops_every_rank(tmp_path):
    context = mp.get_context("spawn")
    results = context.Queue()
    port = 20000 + os.getpid() % 20000
    ranks = [context.Process(target=_rank_with_nan_on_rank_1, args=(r, str(tmp_path), port, results)) for r in (0, 1)]
    for process in ranks:
        process.start()
    outcomes = sorted(results.get(timeout=240) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    for rank, message, unchanged in outcomes:  # rank 0 saw only finite losses: the all-reduced flag skipped it too
        assert "at step 2 (epoch 0, iteration 2)" in message and unchanged, (rank, message)
