"""Host reads of the training loop: none in a step that logs nothing, two at a logging step (the guard's flag and
the running totals), two at an epoch end that is not also a logging step, none repeated for its checkpoint.

Counted with a ``TorchFunctionMode`` around :meth:`Trainer.train_batch` (forward, backward, the optimizer step,
totals, progress, logging) and :meth:`Trainer.end_epoch` (the epoch's totals, and the guard before its checkpoint;
writing the checkpoint, which gathers RNG states and saves tensors, is not counted): every call that
brings a tensor's value to the host (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool``/``float``/
``int``/``index`` of a tensor). On a GPU each of them waits for the device; on the CPU they are counted the same.
Run once in a single process and once inside a one-rank Gloo process group, so that every collective path
(the flag's MAX all-reduce, the totals' all-reduce) runs too.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from standin_method import TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config, tiny_dataset
from torch.overrides import TorchFunctionMode

from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine import trainer as trainer_module
from mixmim.engine.trainer import Trainer
from mixmim.pretrain.task import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

HOST_READS = {
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int",
    torch.Tensor.__index__: "index",
}


class HostReadCounter(TorchFunctionMode):
    """Counts the calls of :data:`HOST_READS` made while it is active (and not :attr:`paused`), by name."""

    paused = False  # set while a checkpoint is written

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS and not HostReadCounter.paused:
            self.counts[HOST_READS[func]] += 1
        return func(*args, **(kwargs or {}))


def uncounted(fn):
    """``fn`` with :class:`HostReadCounter` paused while it runs."""

    def call(*args, **kwargs):
        HostReadCounter.paused = True
        try:
            return fn(*args, **kwargs)
        finally:
            HostReadCounter.paused = False

    return call


def count_reads(monkeypatch) -> dict[tuple[str, int, int], dict[str, int]]:
    """Patch :class:`Trainer` to count the host reads of each ``train_batch`` and ``end_epoch`` call, keyed by
    ``(method, global step after the call, micro-batch count after the call)``."""
    reads: dict[tuple[str, int, int], dict[str, int]] = {}
    micro = [0]
    for name in ("train_batch", "end_epoch"):
        real = getattr(Trainer, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            counter = HostReadCounter()
            try:
                with counter:
                    return _real(self, *args, **kwargs)
            finally:
                micro[0] += _name == "train_batch"
                reads[(_name, self.position.global_step, micro[0])] = dict(+counter.counts)

        monkeypatch.setattr(Trainer, name, counted)
    for module, name in ((ckpt_io, "atomic_torch_save"), (trainer_module, "gather_to_main")):  # the checkpoint
        monkeypatch.setattr(module, name, uncounted(getattr(module, name)))
    return reads


@contextlib.contextmanager
def one_rank_process_group(tmp_path) -> Iterator[None]:
    """A Gloo process group of one rank for the duration (destroyed after, whatever happens)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("collectives", [False, True], ids=["single", "process-group"])
def test_host_reads_only_at_logging_steps_and_epoch_ends(tmp_path, monkeypatch, collectives):
    reads = count_reads(monkeypatch)
    # 2 epochs x 4 steps x 2 micro-batches; records at steps 3 and 6; epoch ends at steps 4 and 8
    cfg = tiny_config(**{"pretrain.epochs": 2, "pretrain.accum_iter": 2, "pretrain.clip_grad": 1.0})
    method = TinyMaskedAutoencoder(img_size=IMG)
    with one_rank_process_group(tmp_path) if collectives else contextlib.nullcontext():
        result = pretrain(method, tiny_dataset(cfg), cfg, tmp_path / "run", log_every=3)
    assert result["steps"] == 8 and method.calls == 16
    batches = {key: value for key, value in reads.items() if key[0] == "train_batch"}
    assert len(batches) == 16
    logging = {"item": 1, "tolist": 2 if collectives else 1}  # the flag; the losses (+ the all-reduced sums)
    expected = {key: logging if key[1] in (3, 6) and key[2] % 2 == 0 else {} for key in batches}
    assert batches == expected  # no read in the 14 other micro-batches
    epoch_ends = {key: value for key, value in reads.items() if key[0] == "end_epoch"}
    assert epoch_ends == {("end_epoch", 4, 8): logging, ("end_epoch", 8, 16): logging}


def test_an_epoch_end_at_a_logging_step_reads_nothing_more(tmp_path, monkeypatch):
    reads = count_reads(monkeypatch)
    cfg = tiny_config(**{"pretrain.epochs": 1})
    pretrain(TinyMaskedAutoencoder(img_size=IMG), tiny_dataset(cfg), cfg, tmp_path, log_every=4)
    assert [key[1] for key, value in reads.items() if value] == [4, 8]  # records at 4 and 8; epoch end at 8
    assert reads[("end_epoch", 8, 8)] == {}
