"""The non-finite guard of the one training loop in the fine-tuning and linear-probe stages: a NaN loss is
never applied, and the stage stops naming the step and the last good checkpoint (with the event recorded)."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import tiny_config

from mixmim.engine.nonfinite import NonFiniteLossError
from mixmim.evaluate import run_finetune, run_linprobe
from mixmim.evaluate.train_loop import ClassifierTask
from mixmim.runs.rundir import read_jsonl, read_result

STAGES = {"finetune": run_finetune, "linprobe": run_linprobe}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_nonfinite_loss_stops_naming_step_and_checkpoint(tmp_path, monkeypatch, stage):
    real = ClassifierTask.loss
    seen = {"calls": 0, "snapshot": None}

    def nan_at_step_6(self, model, inputs, targets):  # 4 steps per epoch: step 6 is in epoch 2
        loss = real(self, model, inputs, targets)
        seen["calls"] += 1
        if seen["calls"] == 6:
            seen["snapshot"] = {k: v.clone() for k, v in self.trainable.state_dict().items()}
            seen["trainable"] = self.trainable
            return loss * float("nan")
        return loss

    monkeypatch.setattr(ClassifierTask, "loss", nan_at_step_6)
    message = rf"step 6 \(epoch 1, iteration 1\).*{stage}/checkpoint-last\.pth \(step 4\)"
    with pytest.raises(NonFiniteLossError, match=message):
        STAGES[stage](tiny_config(init="random"), tmp_path, log_every=1)
    for key, value in seen["trainable"].state_dict().items():  # the update was not applied
        assert torch.equal(value, seen["snapshot"][key]), key
    records = read_jsonl(tmp_path / stage / "metrics.jsonl")
    assert [r for r in records if r.get("event")] == [
        {"event": "nonfinite_loss", "step": 6, "epoch": 1, "loss": None, "action": "stop", "restored_step": 4}
    ]
    assert [r["step"] for r in records if "loss" in r and "event" not in r] == [1, 2, 3, 4, 5]
    assert read_result(tmp_path, stage) is None
