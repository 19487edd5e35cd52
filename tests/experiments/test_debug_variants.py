"""Every registered experiment's debug variant runs for real on CPU (the torchtitan idea: a tiny
variant of every recipe), through the same launcher the CLI uses."""

from pathlib import Path

import pytest

from experiments.launching import experiment_dir, launch_experiment
from experiments.registry import EXPERIMENTS, get_experiment
from mixmim.rundir import is_done, read_json


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_debug_variant_runs_every_stage(name, tmp_path):
    exp = get_experiment(name, "debug")
    report = launch_experiment(exp, tmp_path)
    assert report.ok, report.summary()
    root = experiment_dir(tmp_path, exp)
    for cfg in exp.runs:
        for stage in cfg.stages:
            assert is_done(root / cfg.name, stage), f"{cfg.name}/{stage}"
        manifest = read_json(root / cfg.name / "manifest.json")
        assert manifest["experiment"] == name and manifest["run"] == cfg.name
    # the tables' stages were all produced
    for table in exp.tables:
        for column in table.columns:
            assert any((root / cfg.name / column.stage / "result.json").is_file() for cfg in exp.runs)


def test_full_variants_build_and_validate():
    """The full variants (ImageNet scale) build with their recipes; a missing data root fails early."""
    from experiments.launching import RunSetupError, validate_run

    exp = get_experiment("imagenet-main")
    assert len(exp.runs) == 6
    cfg = exp.runs[0]
    assert cfg.pretrain.batch_size * cfg.launch.nodes * cfg.launch.gpus_per_node == 2048
    assert cfg.pretrain.blr == 1.5e-4 and cfg.pretrain.betas == (0.9, 0.95)
    assert cfg.finetune.batch_size * cfg.launch.nodes * cfg.launch.gpus_per_node == 1024
    with pytest.raises(RunSetupError, match="data.root"):
        validate_run(cfg, Path("/nonexistent"))
