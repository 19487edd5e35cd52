"""``cfg.init`` resolved once (:func:`mixmim.weights.init_source.resolve_init`): the rule and the errors of every
stage that loads an encoder (the launch-time check: ``tests/experiments/test_launch_init.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixmim.weights.init_source import InitSource, InitWeightsError, resolve_init


def _encoder(run_dir: Path) -> Path:
    path = run_dir / "pretrain" / "encoder.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return path


def test_keywords_and_paths_resolve_to_their_files(tmp_path, monkeypatch):
    assert resolve_init("random", tmp_path) == InitSource("random")
    assert resolve_init("random", tmp_path).describe() == {"init": "random", "init_path": None}
    encoder = _encoder(tmp_path)
    assert resolve_init("pretrain", tmp_path) == InitSource("pretrain", encoder)
    monkeypatch.setenv("HOME", str(tmp_path))  # a path's ~ is expanded
    assert resolve_init("~/pretrain/encoder.pth", tmp_path / "other") == InitSource("path", encoder)


def test_each_bad_init_names_the_problem_and_the_fix(tmp_path):
    with pytest.raises(InitWeightsError, match="init is empty; set init to 'pretrain'"):
        resolve_init("", tmp_path)
    with pytest.raises(InitWeightsError, match="run the 'pretrain' stage of this run first") as err:
        resolve_init("pretrain", tmp_path)
    assert str(tmp_path / "pretrain" / "encoder.pth") in str(err.value)
    with pytest.raises(InitWeightsError, match="no such checkpoint file") as err:
        resolve_init(str(tmp_path / "nope.pth"), tmp_path)
    assert str(tmp_path / "nope.pth") in str(err.value) and "'random'" in str(err.value)


def test_a_planned_pretraining_stage_will_write_the_encoder(tmp_path):
    source = resolve_init("pretrain", tmp_path, pretrain_planned=True)
    assert source == InitSource("pretrain", tmp_path / "pretrain" / "encoder.pth")
