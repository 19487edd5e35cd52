"""The launch-time check of ``cfg.init`` (``validate_run``) is the stages' own rule
(:func:`mixmim.weights.init_source.resolve_init`): it refuses what a stage would refuse, with the same message and
the run's name, and accepts what a stage will find."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.launching import RunSetupError, validate_run
from mixmim.config import RunConfig, apply_overrides


def _encoder(run_dir: Path) -> None:
    path = run_dir / "pretrain" / "encoder.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")


def _run(init: str, stages: tuple[str, ...]) -> RunConfig:
    return apply_overrides(RunConfig(experiment="t", name="r"), {"init": init, "stages": list(stages)})


@pytest.mark.parametrize(
    ("init", "stages", "message"),
    [
        ("", ("finetune",), "init is empty"),
        ("pretrain", ("knn", "coco"), "run the 'pretrain' stage of this run first"),
        ("/nowhere/x.pth", ("linprobe",), "no such checkpoint file"),
    ],
)
def test_the_launcher_refuses_what_the_stages_would_refuse(tmp_path, init, stages, message):
    with pytest.raises(RunSetupError, match=message) as err:
        validate_run(_run(init, stages), tmp_path)
    assert "run 'r'" in str(err.value) and "--set init=" in str(err.value)


def test_the_launcher_accepts_what_the_stages_will_find(tmp_path, monkeypatch):
    validate_run(_run("pretrain", ("pretrain", "finetune")), tmp_path)  # pre-training comes first
    validate_run(_run("", ("pretrain",)), tmp_path)  # nothing evaluates an encoder
    _encoder(tmp_path)
    validate_run(_run("pretrain", ("linprobe",)), tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    validate_run(_run("~/pretrain/encoder.pth", ("knn",)), tmp_path / "other")  # ~ as the stages read it
