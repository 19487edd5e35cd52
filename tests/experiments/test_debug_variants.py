"""Every registered experiment's debug variant runs for real on CPU (the torchtitan idea: a tiny
variant of every recipe), through the same launcher the CLI uses.

One run per distinct code path: the runs of an experiment that share method, backbone, stages and init differ
only by a setting of their method (a mask ratio or type, a strategy, the schedule length, a transfer dataset
that the debug variant replaces by the built-in data), and every value of those settings is covered where it
is implemented (``tests/mixmim/pretrain/test_method_mixmim.py``, ``tests/baselines``). So each experiment runs one
representative of each path (25 of its 47 debug runs; the five ablations' 17 runs were one path), and every
debug run is still built, validated and planned by :func:`test_every_debug_run_validates_and_plans`.
"""

from pathlib import Path

import pytest

from experiments.launching import dry_run_plan, experiment_dir, launch_experiment
from experiments.registry import EXPERIMENTS, get_experiment
from mixmim.runs.rundir import is_done, read_json


def representatives(runs: list) -> list:
    """The first run of each (method, backbone, stages, init): one per code path (module docstring)."""
    paths = {}
    for cfg in runs:
        paths.setdefault((cfg.method.name, cfg.model.backbone, tuple(cfg.stages), cfg.init), cfg)
    return list(paths.values())


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_debug_run_validates_and_plans(name, tmp_path):
    exp = get_experiment(name, "debug")
    assert len(dry_run_plan(exp, tmp_path)) == len(exp.runs) and not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_debug_variant_runs_every_stage(name, tmp_path):
    exp = get_experiment(name, "debug")
    exp.runs = representatives(exp.runs)
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
