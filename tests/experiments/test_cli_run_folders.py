"""`run` on folders with a history: a failed first attempt never strands a folder, config changes after results
need --force-config (and --dry-run says so too), expected errors are one message with their exit code."""

from __future__ import annotations

import pytest

from experiments import cli
from experiments.cli import main
from mixmim.runs.rundir import read_json

KNN_ONLY = ["--variant", "debug", "--set", "stages=[knn]", "--set", "init=random"]


def run_dir(tmp_path):
    return tmp_path / "ablation-dual-reconstruction-debug" / "mixmim-mixmim_tiny_32-dual_reconstructionTrue-s0"


@pytest.mark.slow
def test_a_failed_first_attempt_takes_the_corrected_config(tmp_path, capsys):
    args = ["run", "ablation-dual-reconstruction", *KNN_ONLY, "--output", str(tmp_path)]
    missing_root = ["--set", "data.dataset=folder", "--set", f"data.root={tmp_path / 'no-such-imagenet'}"]
    assert main([*args, *missing_root]) == 2  # a root that does not exist is refused before anything is written
    assert not run_dir(tmp_path).exists()
    (tmp_path / "empty-imagenet").mkdir()  # exists, but without train/ and val/: the stage itself fails
    bad_root = ["--set", "data.dataset=folder", "--set", f"data.root={tmp_path / 'empty-imagenet'}"]
    assert main([*args, *bad_root]) == 1
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0  # the plan says the corrected config replaces the failed one
    assert "no stage result yet: the new config replaces it" in capsys.readouterr().out
    assert main(args) == 0
    folder = run_dir(tmp_path)
    assert "empty-imagenet" in (folder / "config.previous.yaml").read_text()
    assert "empty-imagenet" not in (folder / "config.yaml").read_text()
    assert read_json(folder / "manifest.json")["config_changes"][0]["action"] == "replace"
    capsys.readouterr()

    # results exist now: a changed config is refused, by --dry-run as by run, and --force-config accepts it
    for extra in (["--dry-run"], []):
        assert main([*args, "--set", "knn.k=5", *extra]) == 2
        err = capsys.readouterr().err
        assert "holds results of run" in err and "--force-config" in err and "Traceback" not in err
    assert main([*args, "--set", "knn.k=5", "--force-config"]) == 0
    changes = read_json(folder / "manifest.json")["config_changes"]
    assert changes[-1]["action"] == "force" and changes[-1]["stages_done"] == ["knn"] and "k: 5" in changes[-1]["diff"]


def test_expected_errors_are_one_message_with_a_distinct_exit_code(tmp_path, capsys, monkeypatch):
    assert main(["report", "smoke", "--variant", "debug", "--output", str(tmp_path)]) == 3  # nothing to report
    err = capsys.readouterr().err
    assert err.startswith("mixmim-bench: error: ") and "Traceback" not in err

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "list", interrupted)
    assert main(["list"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err

    def bug(_args):
        raise ZeroDivisionError("a bug keeps its traceback")

    monkeypatch.setitem(cli.COMMANDS, "list", bug)
    with pytest.raises(ZeroDivisionError):
        main(["list"])


def test_slurm_without_a_cluster_is_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    args = ["run", "ablation-dual-reconstruction", *KNN_ONLY, "--output", str(tmp_path), "--executor", "slurm"]
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "needs a Slurm cluster" in err and "--executor local" in err and "Traceback" not in err


def test_a_folder_written_before_new_keys_is_upgraded_not_refused(tmp_path, capsys):
    """A newer version adds config keys: a finished run whose config.yaml lacks them (at their defaults) is the
    same run, so the launch rewrites the file and keeps the results; a real change is still refused."""
    args = ["run", "ablation-dual-reconstruction", *KNN_ONLY, "--output", str(tmp_path)]
    assert main(args) == 0
    folder = run_dir(tmp_path)
    config = folder / "config.yaml"
    current = config.read_text()
    older = current.replace("  decode: cpu\n", "")  # as written before data.decode existed
    assert older != current
    config.write_text(older)
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    assert "predates keys that take their defaults (data.decode), rewritten" in capsys.readouterr().out
    assert main(args) == 0
    assert config.read_text() == current and (folder / "config.previous.yaml").read_text() == older
    change = read_json(folder / "manifest.json")["config_changes"][-1]
    assert change["action"] == "upgrade" and change["stages_done"] == ["knn"] and "decode: cpu" in change["diff"]
    config.write_text(older.replace("k: 20", "k: 5"))  # an old folder with a real difference is still refused
    assert main(args) == 2
    assert "holds results of run" in capsys.readouterr().err
