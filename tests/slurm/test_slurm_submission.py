"""What the slurm executor submits, read from the sbatch scripts (fake sbatch: no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from mixmim.config import LaunchConfig
from slurm import RunSpec, StageSpec, launch
from slurm.executor import executor_parameters
from slurm.records import read_launch_record
from slurm.report import SUBMITTED
from slurm.testing import OrderConfig, mark_order


def run_with(run_dir: Path, names: list[str]) -> RunSpec:
    return RunSpec(run_dir, [StageSpec(name, mark_order, OrderConfig(stage=name)) for name in names])


def sbatch_flags(script: Path) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.read_text().splitlines() if line.startswith("#SBATCH")]


def test_no_gpu_flag_without_gpus(tmp_path: Path, fake_slurm: Path) -> None:
    cfg = LaunchConfig(
        executor="slurm",
        partition="learn",
        account="mim",
        qos="high",
        time_min=90,
        nodes=1,
        gpus_per_node=0,
        cpus_per_task=4,
        mem_gb=32,
        constraint="volta32gb",
        slurm_extra={"mail-type": "END"},
    )
    launch([run_with(tmp_path / "run", ["pretrain"])], cfg, tmp_path / "logs")
    flags = sbatch_flags(fake_slurm / "sbatch-900001.sh")
    assert not [flag for flag in flags if "gpu" in flag.split("=")[0] or "gres" in flag.split("=")[0]]
    for expected in (
        "--partition=learn",
        "--account=mim",
        "--qos=high",
        "--time=90",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=4",
        "--mem=32GB",
        "--constraint=volta32gb",
        "--mail-type=END",
        "--kill-on-invalid-dep=yes",
    ):
        assert expected in flags


def test_one_task_per_gpu() -> None:
    params = executor_parameters(LaunchConfig(executor="slurm", nodes=2, gpus_per_node=8), "job")
    assert params["gpus_per_node"] == 8 and params["tasks_per_node"] == 8 and params["nodes"] == 2
    assert "gpus_per_node" not in executor_parameters(LaunchConfig(executor="slurm"), "job")


def test_gpu_job_script(tmp_path: Path, fake_slurm: Path) -> None:
    cfg = LaunchConfig(executor="slurm", nodes=2, gpus_per_node=4, mem_gb=0, partition="")
    launch([run_with(tmp_path / "run", ["pretrain"])], cfg, tmp_path / "logs")
    flags = sbatch_flags(fake_slurm / "sbatch-900001.sh")
    assert {"--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2"} <= set(flags)
    assert not [flag for flag in flags if flag.startswith(("--mem", "--partition", "--account", "--qos"))]


def test_a_multi_node_job_binds_gloo_and_nccl_to_the_configured_interface(tmp_path: Path, fake_slurm: Path) -> None:
    """One job over 2 nodes; ``launch.network_interface`` is exported to its tasks, and nothing when it is empty
    (the job's environment decides)."""
    for interface, job_id in (("ib0", 900001), ("", 900002)):
        cfg = LaunchConfig(executor="slurm", nodes=2, tasks_per_node=2, cpus_per_task=1, network_interface=interface)
        launch([run_with(tmp_path / f"run{job_id}", ["pretrain"])], cfg, tmp_path / "logs")
        script = (fake_slurm / f"sbatch-{job_id}.sh").read_text()
        assert {"--nodes=2", "--ntasks-per-node=2"} <= set(sbatch_flags(fake_slurm / f"sbatch-{job_id}.sh"))
        exports = [line for line in script.splitlines() if "SOCKET_IFNAME" in line]
        assert exports == (["export GLOO_SOCKET_IFNAME=ib0 NCCL_SOCKET_IFNAME=ib0"] if interface else []), script


def test_the_tasks_of_a_job_end_together(tmp_path: Path, fake_slurm: Path) -> None:
    """Several tasks: srun ends the job when one fails (no rank waits in a collective for a dead one); each
    task runs as many threads as it has CPUs."""
    for tasks, job_id in ((2, 900001), (1, 900002)):
        cfg = LaunchConfig(executor="slurm", tasks_per_node=tasks, cpus_per_task=1)
        launch([run_with(tmp_path / f"run{tasks}", ["pretrain"])], cfg, tmp_path / "logs")
        script = (fake_slurm / f"sbatch-{job_id}.sh").read_text()
        assert f"--ntasks-per-node={tasks}" in sbatch_flags(fake_slurm / f"sbatch-{job_id}.sh")
        (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
        assert ("--kill-on-bad-exit=1" in srun.split()) == (tasks > 1), srun
        assert "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}" in script.splitlines()  # a thread per CPU of a task


def test_stages_of_a_run_chain_with_afterok(tmp_path: Path, fake_slurm: Path) -> None:
    run = run_with(tmp_path / "run", ["pretrain", "linprobe", "knn"])
    report = launch([run], LaunchConfig(executor="slurm"), tmp_path / "logs")
    assert [stage.outcome for stage in report.stages] == [SUBMITTED] * 3
    assert [stage.job_id for stage in report.stages] == ["900001", "900002", "900003"]
    assert not [flag for flag in sbatch_flags(fake_slurm / "sbatch-900001.sh") if "dependency" in flag]
    assert "--dependency=afterok:900001" in sbatch_flags(fake_slurm / "sbatch-900002.sh")
    assert "--dependency=afterok:900002" in sbatch_flags(fake_slurm / "sbatch-900003.sh")
    record = read_launch_record(run.run_dir, "linprobe")
    assert record is not None and record.job_id == "900002" and record.dependency == "afterok:900001"
    assert record.stderr == str(tmp_path / "logs" / "900002_0_log.err")


def test_a_grid_goes_out_as_job_arrays(tmp_path: Path, fake_slurm: Path) -> None:
    runs = [run_with(tmp_path / f"run{i}", ["pretrain", "knn"]) for i in range(3)]
    odd = run_with(tmp_path / "odd", ["knn"])
    report = launch([*runs, odd], LaunchConfig(executor="slurm"), tmp_path / "logs")
    assert [stage.job_id for stage in report.stages[:6]] == [
        "900001_0",
        "900002_0",
        "900001_1",
        "900002_1",
        "900001_2",
        "900002_2",
    ]
    assert "--array=0-2%3" in sbatch_flags(fake_slurm / "sbatch-900001.sh")
    assert "--dependency=aftercorr:900001" in sbatch_flags(fake_slurm / "sbatch-900002.sh")
    assert report.stages[6].job_id == "900003"  # a run with other stages is its own job
    assert not [flag for flag in sbatch_flags(fake_slurm / "sbatch-900003.sh") if "array" in flag]
