"""Host reads in the training loop's hot path (``Trainer.micro_step`` + ``Trainer.optimizer_step``): today one
``.item()`` per micro-batch (the non-finite check) and none added by logging. Pinned so that no read creeps in;
the issue's target (reads only at logging steps) will lower the expected count."""

from __future__ import annotations

import collections

import pytest
import torch
from standin_method import TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config, tiny_dataset

from mixmim.engine import pretrain
from mixmim.engine.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_host_read_per_micro_batch_and_none_for_logging(tmp_path, monkeypatch):
    counts: collections.Counter[str] = collections.Counter()
    inside = [False]
    for name in ("item", "tolist", "cpu", "numpy"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            counts[_name] += inside[0]
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for name in ("micro_step", "optimizer_step"):
        real = getattr(Trainer, name)

        def hot(self, *args, _real=real, **kwargs):
            inside[0] = True
            try:
                return _real(self, *args, **kwargs)
            finally:
                inside[0] = False

        monkeypatch.setattr(Trainer, name, hot)
    cfg = tiny_config(**{"pretrain.epochs": 1, "pretrain.accum_iter": 2})
    method = TinyMaskedAutoencoder(img_size=IMG)
    result = pretrain(method, tiny_dataset(cfg), cfg, tmp_path, log_every=2)
    micro_batches = 2 * result["steps"]
    assert result["steps"] >= 4 and method.calls == micro_batches
    assert dict(+counts) == {"item": micro_batches}  # logging every 2 steps added nothing
