"""The non-finite guard of the one training loop in the built-in COCO engine: a NaN loss is never applied;
``coco.nonfinite=stop`` stops naming the step and the last good checkpoint, ``rollback`` reloads that
checkpoint and continues on a reseeded random path to the end (the event recorded in both)."""

from __future__ import annotations

import pytest
import torch
from run_tiny_coco import STEPS, tiny_coco_config

import mixmim.transfer.detection_task as detection
from mixmim.engine.nonfinite import NonFiniteLossError
from mixmim.runs.rundir import read_jsonl, read_result
from mixmim.transfer import run_coco


def nan_at_call(monkeypatch, call: int) -> dict:
    """Make the ``call``-th detection loss NaN; return what the patched loss saw (the weights before it)."""
    real = detection.DetectionTask.loss
    seen: dict = {"calls": 0}

    def loss(self, model, inputs, targets):
        value = real(self, model, inputs, targets)
        seen["calls"] += 1
        if seen["calls"] == call:
            seen["snapshot"] = {k: v.clone() for k, v in self.trainable.state_dict().items()}
            seen["trainable"] = self.trainable
            return value * float("nan")
        return value

    monkeypatch.setattr(detection.DetectionTask, "loss", loss)
    monkeypatch.setattr(detection, "LOG_EVERY", 1)  # one record per step, as the classifier guard test
    return seen


def test_nonfinite_loss_stops_naming_step_and_checkpoint(tmp_path, monkeypatch):
    seen = nan_at_call(monkeypatch, 7)  # 6 steps per epoch: step 7 is the first of epoch 2
    message = r"step 7 \(epoch 1, iteration 0\).*coco/checkpoint-last\.pth \(step 6\)"
    with pytest.raises(NonFiniteLossError, match=message):
        run_coco(tiny_coco_config(), tmp_path)
    for key, value in seen["trainable"].state_dict().items():  # the update was not applied
        assert torch.equal(value, seen["snapshot"][key]), key
    records = read_jsonl(tmp_path / "coco" / "metrics.jsonl")
    assert [r for r in records if r.get("event")] == [
        {"event": "nonfinite_loss", "step": 7, "epoch": 1, "loss": None, "action": "stop", "restored_step": 6}
    ]
    assert [r["step"] for r in records if "loss" in r and "event" not in r] == [1, 2, 3, 4, 5, 6]
    assert read_result(tmp_path, "coco") is None


@pytest.mark.slow
def test_nonfinite_loss_rolls_back_and_finishes(tmp_path, monkeypatch):
    nan_at_call(monkeypatch, 8)  # step 8: rolled back to step 6, steps 7-8 run again on another random path
    result = run_coco(tiny_coco_config(**{"coco.nonfinite": "rollback"}), tmp_path)
    assert result["steps"] == STEPS and result["nonfinite_events"] == 1
    assert read_result(tmp_path, "coco")["nonfinite_events"] == 1
    records = read_jsonl(tmp_path / "coco" / "metrics.jsonl")
    assert [r for r in records if r.get("event")] == [
        {"event": "nonfinite_loss", "step": 8, "epoch": 1, "loss": None, "action": "rollback", "restored_step": 6}
    ]
    assert [r["step"] for r in records if "loss" in r and "event" not in r] == list(range(1, STEPS + 1))
