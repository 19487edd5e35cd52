"""The mixmim-bench CLI: list, show, run (dry and real), status, report, typed --set, budgets."""

import pytest

from experiments.budget import Budget, BudgetError, apply_budget
from experiments.cli import main
from experiments.registry import get_experiment


def test_list_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("smoke", "imagenet-main", "fixed-encoder", "ablation-mask-ratio", "coco", "transfer-classification"):
        assert name in out


def test_show_prints_resolved_configs(capsys):
    assert main(["show", "smoke", "--variant", "debug", "--set", "pretrain.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "## run mixmim-mixmim_tiny_32-s0: stages pretrain -> linprobe -> knn -> finetune" in out
    assert "epochs: 3" in out


def test_unknown_key_fails_with_closest_keys(capsys):
    assert main(["run", "smoke", "--dry-run", "--set", "pretrain.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'pretrain.epoch'" in err and "pretrain.epochs" in err


def test_bad_type_fails(capsys):
    assert main(["show", "smoke", "--set", "pretrain.epochs=ten"]) == 2
    assert "pretrain.epochs" in capsys.readouterr().err


def test_dry_run_launches_nothing(tmp_path, capsys):
    assert main(["run", "smoke", "--dry-run", "--output", str(tmp_path)]) == 0
    assert "5 runs would launch" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_missing_data_root_fails_at_start(tmp_path, capsys):
    assert main(["run", "imagenet-main", "--dry-run", "--output", str(tmp_path)]) == 2
    assert "data.root" in capsys.readouterr().err


def test_run_status_report_and_refusal_to_mix_configs(tmp_path, capsys):
    args = ["--variant", "debug", "--output", str(tmp_path), "--set", "stages=[pretrain,knn]"]
    assert main(["run", "ablation-dual-reconstruction", *args]) == 0
    captured = capsys.readouterr()
    assert "MixMIM-B ablation" in captured.out and "Review bundle" not in captured.out  # stdout: the tables only
    assert "Review bundle" in captured.err
    assert main(["status", "ablation-dual-reconstruction", "--variant", "debug", "--output", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("done") == 4
    # same command again: everything is skipped, nothing overwritten
    assert main(["run", "ablation-dual-reconstruction", *args]) == 0
    capsys.readouterr()
    # a different config into the same folders is refused
    assert main(["run", "ablation-dual-reconstruction", *args, "--set", "seed=1"]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["report", "ablation-dual-reconstruction", "--variant", "debug", "--output", str(tmp_path),
                 "--format", "csv"]) == 0
    assert "dual_reconstruction" in capsys.readouterr().out


def test_budget_parsing_and_conversion(tmp_path):
    assert Budget.parse("gpu-hours=2.5") == Budget("gpu-hours", 2.5)
    for bad in ("hours=3", "epochs=", "flops=-1", "epochs=x"):
        with pytest.raises(BudgetError):
            Budget.parse(bad)
    exp = get_experiment("smoke", "debug")
    records = apply_budget(exp.runs, Budget("epochs", 7), tmp_path)
    assert all(cfg.pretrain.epochs == 7 for cfg in exp.runs if "pretrain" in cfg.stages)
    assert set(records) == {cfg.name for cfg in exp.runs if "pretrain" in cfg.stages}


def test_flops_budget_gives_fewer_epochs_to_costlier_methods(tmp_path):
    exp = get_experiment("smoke", "debug")
    runs = [cfg for cfg in exp.runs if cfg.method.name in ("mixmim", "simmim")]
    records = apply_budget(runs, Budget("flops", 1e13), tmp_path)
    per_image = {cfg.method.name: records[cfg.name]["train_flops_per_image"] for cfg in runs}
    epochs = {cfg.method.name: cfg.pretrain.epochs for cfg in runs}
    assert (per_image["mixmim"] > per_image["simmim"]) == (epochs["mixmim"] <= epochs["simmim"])
    assert all(r["kind"] == "flops" and r["train_images"] > 0 for r in records.values())


def test_gpu_hours_budget_needs_a_measurement(tmp_path):
    exp = get_experiment("smoke", "debug")
    with pytest.raises(BudgetError, match="mixmim-bench bench"):
        apply_budget(exp.runs[:1], Budget("gpu-hours", 1), tmp_path)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "cpu.jsonl").write_text(
        '{"kind": "step", "method": "mixmim", "backbone": "mixmim_tiny_32", "device": "cpu", "images_per_s": 100.0}\n')
    records = apply_budget(exp.runs[:1], Budget("gpu-hours", 0.01), tmp_path)
    assert exp.runs[0].pretrain.epochs == int(0.01 * 3600 * 100 / records[exp.runs[0].name]["train_images"])


@pytest.mark.parametrize("budget", ["gpu-hours=500", "flops=1e20"])
def test_a_budget_without_a_data_root_is_one_message(tmp_path, capsys, budget):
    """Budgets need the training-set size: without a data root, exit 2 with the fix, not a traceback."""
    assert main(["show", "fixed-encoder", "--budget", budget, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "Traceback" not in err


def test_a_missing_data_root_names_both_layouts(tmp_path, capsys):
    assert main(["run", "smoke", "--variant", "debug", "--dry-run", "--set", "data.dataset=folder",
                 "--set", f"data.root={tmp_path / 'nope'}", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "train/ and val/" in err and "MIXMIM_TRANSFER_ROOT" in err


def test_executor_flag_reaches_every_run_and_each_run_keeps_its_resources(tmp_path, monkeypatch):
    """``run --executor X`` launches every run on X with that run's own launch section, and leaves every
    ``config.yaml`` as the experiment defines it (it once set run 0's config only, so run 0's folder refused
    a later launch without the flag, and every run got run 0's resources)."""
    import experiments.launching as launching
    from mixmim.config import load_yaml
    from slurm import LaunchReport

    launched = {}

    def fake_launch(specs, launch_cfg, log_dir, takeover=False):
        for spec in specs:
            spec.prepare()
            launched[spec.name] = launch_cfg
        return LaunchReport(launch_cfg.executor)

    exp = get_experiment("smoke", "debug")
    exp.runs[1].launch.cpus_per_task = 7  # one run asks for other resources
    monkeypatch.setattr(launching, "launch", fake_launch)
    launching.launch_experiment(exp, tmp_path, "debug")
    assert set(launched) == {cfg.name for cfg in exp.runs}
    assert {name: cfg.executor for name, cfg in launched.items()} == dict.fromkeys(launched, "debug")
    assert launched[exp.runs[1].name].cpus_per_task == 7 and launched[exp.runs[0].name].cpus_per_task != 7
    root = launching.experiment_dir(tmp_path, exp)
    assert {load_yaml(root / cfg.name / "config.yaml").launch.executor for cfg in exp.runs} == {"local"}
