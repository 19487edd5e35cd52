"""Bad values are refused by show, run and --dry-run before any stage runs: exit 2, the allowed values, no files."""

from __future__ import annotations

import pytest

from experiments.cli import main

BAD_CHOICES = [("method.mask_type=mxi", "mix"), ("pretrain.precision=fp8", "fp32"), ("data.dataset=imagnet", "digits"),
               ("method.mask_strategy=blok", "block"), ("data.on_corrupt=ignor", "skip"),
               ("model.backbone=mixmim_tiny_3", "mixmim_tiny_32"), ("method.name=simim", "simmim"),
               ("launch.executor=slurn", "slurm"), ("linprobe.optimizer=lar", "lars")]
IMPOSSIBLE = [("--set", "pretrain.epochs=-5", "must be > 0"), ("--set", "pretrain.lr=-1", "must be >= 0"),
              ("--set", "pretrain.batch_size=0", "must be > 0"), ("--budget", "epochs=0.5", "whole number"),
              ("--set", "method.mask_ratio=0", "in (0, 1)")]


@pytest.mark.parametrize("command", [["show"], ["run", "--dry-run"]])
def test_bad_choices_are_refused_with_allowed_values(command, tmp_path, capsys):
    """All bad values at once: the error lists each key, value, the allowed values and the closest."""
    sets = [arg for override, _ in BAD_CHOICES for arg in ("--set", override)]
    argv = [command[0], "smoke", "--variant", "debug", *command[1:], "--output", str(tmp_path), *sets]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{len(BAD_CHOICES)} bad values" in err and "Traceback" not in err
    lines = err.splitlines()
    for override, closest in BAD_CHOICES:
        key, value = override.split("=")
        line = next(line for line in lines if f"for key '{key}'" in line)
        assert repr(value) in line and "allowed values are" in line and line.endswith(f"closest: '{closest}'")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("flag", "value", "expected"), IMPOSSIBLE)
def test_impossible_setting_is_refused_by_run_before_any_stage(flag, value, expected, tmp_path, capsys):
    assert main(["run", "smoke", "--variant", "debug", "--output", str(tmp_path), flag, value]) == 2
    assert expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run directory, no result


def test_dry_run_checks_the_dataset_root(tmp_path, capsys):
    argv = ["run", "smoke", "--variant", "debug", "--dry-run", "--output", str(tmp_path),
            "--set", "data.dataset=folder", "--set", f"data.root={tmp_path / 'nowhere'}"]
    assert main(argv) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_gpu_decode_without_cuda_is_refused_at_launch_unless_slurm_or_overridden(tmp_path, capsys, monkeypatch):
    """``data.decode=gpu`` on a local run without CUDA: one error line naming the fix, no run folder; a Slurm
    launch leaves the check to the node; ``MIXMIM_DECODE_ON_CPU=1`` lets it run on the CPU."""
    import torch

    from mixmim.data.gpu_decode import CPU_OVERRIDE_ENV

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(CPU_OVERRIDE_ENV, raising=False)
    (tmp_path / "jpegs").mkdir()
    out = tmp_path / "out"
    argv = ["run", "smoke", "--variant", "debug", "--only", "mixmim-*", "--output", str(out), "--set",
            "data.dataset=folder", "--set", f"data.root={tmp_path / 'jpegs'}", "--set", "data.decode=gpu",
            "--set", "stages=[pretrain,linprobe,knn]"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mixmim-bench: error: run 'mixmim-") and "(local executor" in err
    assert "--set data.decode=cpu" in err and CPU_OVERRIDE_ENV in err
    assert not out.exists()
    assert main([*argv, "--dry-run", "--executor", "slurm"]) == 0
    monkeypatch.setenv(CPU_OVERRIDE_ENV, "1")
    assert main([*argv, "--dry-run"]) == 0
    assert not out.exists()
