"""Progress: one line per epoch (run, stage, epoch of epochs, ETA) off a terminal; one reused bar on one."""

from __future__ import annotations

import io
import logging
import re

import pytest
from standin_method import TinyMaskedAutoencoder
from tiny_run import IMG, tiny_config, tiny_dataset

from mixmim.engine import progress
from mixmim.engine.progress import StageProgress
from mixmim.pretrain.task import pretrain
from mixmim.runs.rundir import LAUNCH_POSITION_ENV

LINE = re.compile(r"run (\d+/\d+ )?\S+ · \w+ · epoch \d+/\d+ · \d+% · loss \d+\.\d{4} · "
                  r"\d+:\d\d:\d\d elapsed · ETA \d+:\d\d:\d\d")


def test_one_line_per_epoch_when_the_output_is_not_a_terminal(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv(LAUNCH_POSITION_ENV, "3/5")
    monkeypatch.setattr(progress, "interactive", lambda: False)
    caplog.set_level(logging.INFO, logger="mixmim.engine.progress")
    cfg = tiny_config(**{"pretrain.epochs": 2})
    pretrain(TinyMaskedAutoencoder(img_size=IMG), tiny_dataset(cfg), cfg, tmp_path / "mixmim-tiny-s0")
    lines = [r.getMessage() for r in caplog.records if r.name == "mixmim.engine.progress"]
    assert len(lines) == 2 and all(LINE.fullmatch(line) for line in lines), lines
    assert lines[0].startswith("run 3/5 mixmim-tiny-s0 · pretrain · epoch 1/2 · 50% · loss ")
    assert lines[1].startswith("run 3/5 mixmim-tiny-s0 · pretrain · epoch 2/2 · 100% · ")
    assert lines[1].endswith("ETA 0:00:00")
    assert progress._bar is None  # no bar drawn into a file


def test_on_a_terminal_every_stage_reuses_one_bar(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "tqdm", _FileBar)  # a bar drawn into a buffer instead of the test's stderr
    progress.close_bar()
    try:
        first = StageProgress("run-a", "pretrain", epochs=2, steps_per_epoch=4)
        first.start_epoch(0)
        for _ in range(4):
            first.step(0.5)
        bar = progress._bar
        assert bar is not None and bar.n == 4 and bar.total == 8 and "run run-a · pretrain · epoch 1/2" in bar.desc
        second = StageProgress("run-a", "linprobe", epochs=3, steps_per_epoch=2)
        second.start_epoch(1, 1)  # resumed mid-epoch
        assert progress._bar is bar and bar.total == 6 and bar.n == 3 and "linprobe · epoch 2/3" in bar.desc
    finally:
        progress.close_bar()


class _FileBar(progress.tqdm):
    def __init__(self, **kwargs):
        super().__init__(file=io.StringIO(), **kwargs)


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (61.4, "0:01:01"), (3 * 3600 + 5, "3:00:05")])
def test_durations_read_as_hours_minutes_seconds(seconds, text):
    assert progress.format_duration(seconds) == text
