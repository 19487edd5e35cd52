"""Multi-node jobs on a 2-node Slurm cluster on this machine (``scripts/slurm-cluster start --nodes 2``).

The module starts its own cluster and stops it at the end: nodes ``mixmim-node1`` and ``mixmim-node2``, each a
network namespace with its own host name, address (198.18.0.11/.12 on a bridge) and slurmd, sharing this
machine's filesystem as cluster nodes share NFS; other ports and job ids than the single-node cluster's, so
both run side by side. It skips, saying why, where ``MIXMIM_NO_SLURM=1``, Slurm is not installed, or network
namespaces are not allowed (not root, a container without the capabilities).

The jobs of the requeue and smoke scenarios are submitted together at the start (they run side by side; the
requeue test comes first, to interrupt its jobs while they run); the node-loss test, which kills every process
of a node, runs after they ended. Every rank runs on 1 CPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import submitit
from slurm_jobs import assert_bitwise_equal, checkpoint_step, pretrain_only, sacct_states
from submitit.slurm.slurm import SlurmInfoWatcher

from experiments.launching import experiment_dir, launch_experiment
from experiments.registry import get_experiment
from experiments.spec import Experiment
from mixmim.config import LaunchConfig
from mixmim.engine.checkpoint import ENCODER, LAST, load_checkpoint, load_encoder_state
from mixmim.runs import rundir
from slurm import LaunchReport
from slurm.records import read_error_record
from slurm.report import IN_FLIGHT
from slurm.testing import hold_run_lock

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DIR = Path("/tmp/mixmim-slurm-2n")
CLUSTER_ENV = {"MIXMIM_SLURM_PORT": "26817", "MIXMIM_SLURM_DB_PORT": "26820", "MIXMIM_SLURM_FIRST_JOB_ID": "500000"}
NODES = ["mixmim-node1", "mixmim-node2"]
INTERFACE = "mixmim0"  # every node's interface on the bridge
WAIT_S = 900
SMOKE_METHODS = ("mixmim", "mae", "beit")
# Pre-training of the requeue and node-loss runs: batch 8 per rank (256 images: 8 steps per epoch at 4 ranks,
# 16 at 2), a checkpoint every 3 steps, so that an interrupted run resumes mid-epoch.
# REQUEUE_STEPS: long enough to be interrupted mid-run on idle cores (16 steps took about 4 s: a job submitted
# first had finished before the test, which starts watching once every job is submitted, could requeue it).
REQUEUE_STEPS, LOSS_STEPS, CHECKPOINT_STEPS = 64, 40, 3
TIMING = re.compile(r"time|_s$|per_s|hours|throughput|seconds")  # result fields that measure speed, not values


def cluster_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / "slurm-cluster"), *args], capture_output=True, text=True,
                          env={**os.environ, **CLUSTER_ENV}, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[None]:
    """The 2-node cluster, up for the module (``SLURM_CONF`` points at it meanwhile), or a skip saying why."""
    if os.environ.get("MIXMIM_NO_SLURM") == "1":
        pytest.skip("MIXMIM_NO_SLURM=1: no Slurm cluster is started")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [name for name in ("slurmctld", "slurmd", "sbatch") if shutil.which(name, path=path) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing); scripts/test installs it")
    started = cluster_command("start", "--nodes", "2", str(CLUSTER_DIR))
    if started.returncode == 3:  # namespaces not allowed here: start.sh says why
        pytest.skip(started.stderr.strip().splitlines()[-1])
    assert started.returncode == 0, started.stderr[-4000:]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(CLUSTER_DIR / "etc" / "slurm.conf"))
            # A private sacct watcher: jobs of this cluster never meet those of the single-node one.
            patch.setattr(submitit.SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))
            yield
    finally:
        stopped = cluster_command("stop", str(CLUSTER_DIR))
        assert stopped.returncode == 0, stopped.stderr[-4000:]


def on_node(node: str) -> list[str]:
    """A command prefix that runs a command on ``node``: in its network namespace, with its host name."""
    return ["nsenter", f"--net=/run/netns/{node}", "unshare", "--uts", "sh", "-c", f'hostname {node} && exec "$@"',
            "on-node"]  # fmt: skip


def slurm_launch(exp: Experiment, nodes: int, tasks: int) -> str:
    """Every run's launch section as Slurm jobs of ``nodes`` x ``tasks`` (1 CPU each); the executor to pass."""
    for cfg in exp.runs:
        cfg.launch = LaunchConfig(executor="slurm", nodes=nodes, tasks_per_node=tasks, cpus_per_task=1,
                                  time_min=30, network_interface=INTERFACE)  # fmt: skip
    return "slurm"


def smoke() -> Experiment:
    """The debug smoke's MixMIM, MAE and BEiT runs, every stage."""
    exp = get_experiment("smoke", "debug")
    exp.runs = [cfg for cfg in exp.runs if cfg.method.name in SMOKE_METHODS]
    assert len(exp.runs) == len(SMOKE_METHODS)
    return exp


@dataclass
class Launched:
    exp: Experiment
    root: Path
    report: LaunchReport

    def run_dir(self, index: int = 0) -> Path:
        return experiment_dir(self.root, self.exp) / self.exp.runs[index].name

    def job(self) -> submitit.Job:
        return next(iter(self.report.jobs.values()))


def submit(exp: Experiment, root: Path, nodes: int, tasks: int) -> Launched:
    report = launch_experiment(exp, root, slurm_launch(exp, nodes, tasks))
    assert report.ok and report.jobs, report.summary()
    return Launched(exp, root, report)


@pytest.fixture(scope="module")
def scenarios(two_nodes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Launched]]:
    """Every job of the smoke and requeue tests, submitted at once; at the end, waits until they ended."""
    root = tmp_path_factory.mktemp("multinode")
    launched = {
        "uninterrupted": submit(pretrain_only(REQUEUE_STEPS, 8, 20, CHECKPOINT_STEPS), root / "uninterrupted", 2, 1),
        "two-nodes-4": submit(pretrain_only(REQUEUE_STEPS, 8, 20, CHECKPOINT_STEPS), root / "two-nodes-4", 2, 2),
        "one-node-4": submit(pretrain_only(REQUEUE_STEPS, 8, 20, CHECKPOINT_STEPS), root / "one-node-4", 1, 4),
        "smoke-2x1": submit(smoke(), root / "smoke-2x1", 2, 1),
        "smoke-1x2": submit(smoke(), root / "smoke-1x2", 1, 2),
        # last: the requeue test starts watching their checkpoints only once every job is submitted (seconds)
        "requeued": submit(pretrain_only(REQUEUE_STEPS, 8, 20, CHECKPOINT_STEPS), root / "requeued", 2, 1),
        "preempted": submit(pretrain_only(REQUEUE_STEPS, 8, 20, CHECKPOINT_STEPS), root / "preempted", 2, 1),
    }
    yield launched
    for item in launched.values():  # the node-loss test must not kill another test's tasks
        item.report.wait(timeout_s=WAIT_S)


def comparable(result: dict) -> dict:
    """A stage's metrics without the fields that measure speed."""
    metrics = result.get("metrics", result)
    return {key: value for key, value in metrics.items() if not TIMING.search(key)}


def layout(run_dir: Path) -> dict:
    manifest = rundir.read_json(run_dir / "manifest.json")
    return {"world_size": manifest["world_size"], **manifest["layout"]}


def test_a_lock_taken_on_one_node_is_respected_by_a_launch_on_the_other(two_nodes: None, tmp_path: Path) -> None:
    """The run folder is on the shared filesystem: a launch on node 2 leaves a run that a process on node 1
    holds (naming that host), and runs it once the holder has gone."""
    run_dir = tmp_path / "shared-run"
    script = ("import json, logging, sys; from pathlib import Path; from mixmim.config import LaunchConfig; "
              "logging.basicConfig(level=logging.INFO); "
              "from slurm import RunSpec, StageSpec, launch; from slurm.testing import CountingConfig, count_steps; "
              "run = RunSpec(Path(sys.argv[1]), [StageSpec('count', count_steps, CountingConfig(steps=3))]); "
              "report = launch([run], LaunchConfig(executor='local'), Path(sys.argv[1]).parent / 'logs'); "
              "print(json.dumps([stage.outcome for stage in report.stages]))")  # fmt: skip
    command = [*on_node(NODES[1]), sys.executable, "-c", script, str(run_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = hold_run_lock(run_dir, prefix=on_node(NODES[0]))
    try:
        held = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert held.returncode == 0, held.stderr[-3000:]
    assert json.loads(held.stdout.splitlines()[-1]) == [IN_FLIGHT], held.stdout
    assert re.search(rf"being worked on by .*{NODES[0]}", held.stderr), held.stderr[-2000:]
    assert not rundir.is_done(run_dir, "count")
    free = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert free.returncode == 0 and rundir.is_done(run_dir, "count"), free.stderr[-3000:]


def wait_for_checkpoint(folder: Path, step: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while checkpoint_step(folder / LAST) < step:
        assert time.monotonic() < deadline and not (folder / rundir.RESULT_FILE).exists(), folder
        time.sleep(0.2)


def test_a_requeued_two_node_pretraining_resumes_to_the_same_weights(scenarios: dict[str, Launched]) -> None:
    """2 nodes x 1 task, interrupted mid-run by ``scontrol requeue`` and by a preemption, resume from their
    checkpoint and end bitwise equal to the uninterrupted 2-node run.

    With 2 ranks; resume with 3 and 4 ranks (whose sums depend on DDP's bucket layout, which
    :func:`mixmim.engine.distributed.wrap_ddp` keeps fixed) is tested in ``tests/multiprocess/test_three_ranks.py``."""
    for name in ("requeued", "preempted"):
        item = scenarios[name]
        wait_for_checkpoint(item.run_dir() / "pretrain", CHECKPOINT_STEPS)
        if name == "requeued":
            subprocess.run(["scontrol", "requeue", item.job().job_id], check=True)
        else:
            item.job()._interrupt()  # what Slurm does on preemption: SIGTERM, then USR2 -> checkpoint() and requeue
    for name in ("requeued", "preempted", "uninterrupted"):
        scenarios[name].report.wait(timeout_s=WAIT_S)
    reference = scenarios["uninterrupted"].run_dir() / "pretrain"
    for name in ("requeued", "preempted"):
        item = scenarios[name]
        folder = item.run_dir() / "pretrain"
        result, expected = (rundir.read_json(path / rundir.RESULT_FILE)["metrics"] for path in (folder, reference))
        assert result["steps"] == REQUEUE_STEPS and result["loss"] == expected["loss"], (name, result, expected)
        assert_bitwise_equal(load_checkpoint(folder / LAST)["model"], load_checkpoint(reference / LAST)["model"])
        assert "REQUEUED" in sacct_states(item.job().job_id), name
        assert "pretrain resumed from" in Path(item.job().paths.stderr).read_text(), name


def test_two_nodes_of_two_tasks_train_as_one_node_of_four(scenarios: dict[str, Launched]) -> None:
    """World size 4 over 2 nodes x 2 tasks pre-trains bitwise as 1 node x 4 tasks; the manifest says where."""
    for name in ("two-nodes-4", "one-node-4"):
        scenarios[name].report.wait(timeout_s=WAIT_S)
    two, one = (scenarios[name].run_dir() / "pretrain" for name in ("two-nodes-4", "one-node-4"))
    results = [comparable(rundir.read_json(folder / rundir.RESULT_FILE)) for folder in (two, one)]
    assert results[0] == results[1] and results[0]["world_size"] == 4, results
    assert_bitwise_equal(load_checkpoint(two / LAST)["model"], load_checkpoint(one / LAST)["model"])
    assert layout(two.parent) == {"world_size": 4, "nodes": 2, "tasks_per_node": 2, "hosts": NODES,
                                  "network_interface": INTERFACE}  # fmt: skip


def test_the_smoke_on_two_nodes_equals_one_node(scenarios: dict[str, Launched]) -> None:
    """2 nodes x 1 task and 1 node x 2 tasks (world size 2 both): every stage of MixMIM, MAE and BEiT gives the
    same result, the pre-trained encoders are bitwise equal, and the manifests say where the ranks ran."""
    two, one = scenarios["smoke-2x1"], scenarios["smoke-1x2"]
    for item in (two, one):
        item.report.wait(timeout_s=WAIT_S)
    for index, cfg in enumerate(two.exp.runs):
        two_dir, one_dir = two.run_dir(index), one.run_dir(index)
        for stage in cfg.stages:
            results = [rundir.read_result(folder, stage) for folder in (two_dir, one_dir)]
            assert None not in results, f"{cfg.name}/{stage}: {two.report.summary()} {one.report.summary()}"
            assert comparable(results[0]) == comparable(results[1]), (cfg.name, stage)
        assert_bitwise_equal(*(load_encoder_state(folder / "pretrain" / ENCODER) for folder in (two_dir, one_dir)))
        assert layout(two_dir) == {"world_size": 2, "nodes": 2, "tasks_per_node": 1, "hosts": NODES,
                                   "network_interface": INTERFACE}  # fmt: skip
        one_layout = layout(one_dir)
        assert one_layout.pop("hosts")[0] in NODES
        assert one_layout == {"world_size": 2, "nodes": 1, "tasks_per_node": 2, "network_interface": INTERFACE}


def wait_until_idle(node: str) -> None:
    deadline = time.monotonic() + WAIT_S
    sinfo = ["sinfo", "-h", "-n", node, "-o", "%t"]
    while subprocess.run(sinfo, capture_output=True, text=True).stdout.strip() != "idle":
        assert time.monotonic() < deadline, f"{node} did not come back"
        time.sleep(0.5)


def test_a_lost_node_fails_the_job_fast_and_the_next_run_resumes(scenarios: dict[str, Launched],
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """Node 2 dies mid-step (its slurmd and tasks SIGKILLed): rank 0 fails at once and records the reason, the
    job's attempt ends when Slurm declares the node failed (SlurmdTimeout, 30 s), not at the process group's
    30-minute timeout; once the node is back, the next launch (or Slurm's own requeue of a job whose node
    failed) resumes from the last checkpoint and finishes."""
    for item in scenarios.values():  # nothing of the other tests may run on the node that is killed
        item.report.wait(timeout_s=WAIT_S)
    first = submit(pretrain_only(LOSS_STEPS, 8, 20, CHECKPOINT_STEPS), tmp_path / "lost", 2, 1)
    folder = first.run_dir() / "pretrain"
    wait_for_checkpoint(folder, CHECKPOINT_STEPS)
    killed = cluster_command("kill-node", NODES[1], str(CLUSTER_DIR))
    assert killed.returncode == 0, killed.stderr
    lost_at, job_id = time.monotonic(), first.job().job_id
    while (error := read_error_record(first.run_dir(), "pretrain")) is None:  # rank 0 raises at once
        assert time.monotonic() - lost_at < 120, "rank 0 did not notice the lost node"
        time.sleep(0.2)
    noticed = time.monotonic() - lost_at
    assert error["job_id"] == job_id and "Connection" in error["traceback"], error
    while not {"NODE_FAIL", "FAILED", "CANCELLED"} & set(sacct_states(job_id)):  # the job's attempt ended
        assert time.monotonic() - lost_at < 180, f"job {job_id} still running: {sacct_states(job_id)}"
        time.sleep(0.5)
    took = time.monotonic() - lost_at
    step_at_loss = checkpoint_step(folder / LAST)
    assert CHECKPOINT_STEPS <= step_at_loss < LOSS_STEPS and not rundir.is_done(first.run_dir(), "pretrain")

    restarted = cluster_command("start-node", NODES[1], str(CLUSTER_DIR))
    assert restarted.returncode == 0, restarted.stderr
    wait_until_idle(NODES[1])
    # Slurm requeues a job whose node failed (then the launch finds it in flight), else the launch submits it.
    second = launch_experiment(first.exp, first.root, slurm_launch(first.exp, 2, 1))
    assert second.ok, second.summary()
    jobs = list(second.jobs.values()) or [first.job()]
    (second if second.jobs else first.report).wait(timeout_s=WAIT_S)
    assert rundir.read_json(folder / rundir.RESULT_FILE)["metrics"]["steps"] == LOSS_STEPS
    assert "pretrain resumed from" in Path(jobs[0].paths.stderr).read_text()
    reason = error["traceback"].strip().splitlines()[-1]
    states = sacct_states(job_id)
    print(f"lost node: rank 0 failed after {noticed:.1f} s, the job's attempt ended after {took:.1f} s ({states}); "
          f"recorded: {reason}; resumed from step {step_at_loss}")
