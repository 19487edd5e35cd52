"""The Trainer's one logging record (:meth:`Trainer.log_window`): every ``log_every`` optimizer steps, once at the
end of a stage shorter than one window (its only loss record), and once more at the end for a task that asks (the
COCO detection task does: a run that ``max_steps`` ends between two records still logs its last steps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from mixmim.engine.distributed import DistEnv
from mixmim.engine.recipe import Recipe
from mixmim.engine.trainer import Trainer, TrainTask
from mixmim.runs.rundir import read_jsonl

STEPS, LOG_EVERY = 5, 2


class Regression(TrainTask):
    """A linear fit of 10 samples, 2 per step, ``STEPS`` steps in one epoch; each micro-batch's loss is kept."""

    def __init__(self, tail: bool):
        torch.manual_seed(0)
        self.stage, self.tail, self.losses, self.config = "fit", tail, [], {}
        self.module = self.trainable = nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD([{"params": self.module.parameters(), "lr_scale": 1.0}], lr=0.1)
        self.recipe = Recipe(batch_size=2, world_size=1, accum_iter=1, effective_batch=2, blr=0.1, lr=0.1,
                             lr_scale_base=256, min_lr=0.0, precision="fp32", epochs=1, iters_per_epoch=STEPS,
                             total_steps=STEPS, warmup_steps=2, max_steps=0)  # fmt: skip
        self.train_set = TensorDataset(torch.randn(2 * STEPS, 4), torch.randn(2 * STEPS))

    def loss(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(model(inputs).squeeze(-1), targets)
        self.losses.append(loss.item())
        return loss

    def before_finish(self, trainer: Trainer) -> None:
        if self.tail:
            trainer.log_window()
            trainer.log_window()  # nothing since the record: nothing logged


@pytest.mark.parametrize("tail", [False, True])
def test_records_every_log_every_steps_and_the_tail_when_asked(tmp_path, tail):
    task = Regression(tail)
    trainer = Trainer(task, 0, tmp_path / "fit", "r", DistEnv(), torch.device("cpu"), log_every=LOG_EVERY)
    trainer.run()
    records = [r for r in read_jsonl(tmp_path / "fit" / "metrics.jsonl") if "loss" in r]
    windows = [(2, task.losses[0:2]), (4, task.losses[2:4])] + ([(5, task.losses[4:5])] if tail else [])
    assert [r["step"] for r in records] == [step for step, _ in windows]
    for record, (step, losses) in zip(records, windows):
        assert record["loss"] == pytest.approx(sum(losses) / len(losses))
        assert record["lr"] == trainer.learning_rate(step - 1) and record["images_per_s"] > 0
        assert record["epoch"] == pytest.approx(step / STEPS if step < STEPS else 1.0)


def test_a_stage_shorter_than_one_window_logs_its_loss_at_the_end(tmp_path):
    """5 steps at ``log_every`` 10: no periodic record, so the Trainer logs the whole stage's window at its end."""
    task = Regression(tail=False)
    Trainer(task, 0, tmp_path / "fit", "r", DistEnv(), torch.device("cpu"), log_every=10).run()
    records = [r for r in read_jsonl(tmp_path / "fit" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [STEPS]
    assert records[0]["loss"] == pytest.approx(sum(task.losses) / STEPS)
