"""manifest.json: git state (graceful outside a checkout), versions, hardware, stage fields."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from mixmim.config import RunConfig
from mixmim.engine.manifest import (
    STAGE_FIELDS,
    collect_manifest,
    git_state,
    job_layout,
    record_manifest,
    stage_manifest,
)
from mixmim.runs.rundir import read_json

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_level_fields():
    cfg = RunConfig(experiment="exp", name="run3", seed=7, setting={"mask_ratio": 0.5})
    manifest = collect_manifest(cfg, world_size=4)
    assert (manifest["experiment"], manifest["run"], manifest["seed"], manifest["world_size"]) == ("exp", "run3", 7, 4)
    assert manifest["method"] == "mixmim" and manifest["backbone"] == cfg.model.backbone
    assert manifest["setting"] == {"mask_ratio": 0.5}
    assert {"python", "torch", "timm", "cuda"} <= manifest["versions"].keys()
    assert manifest["hardware"]["cpu_count"] >= 1 and isinstance(manifest["hardware"]["gpus"], list)
    assert {"commit", "dirty"} == manifest["git"].keys()


def test_git_state_outside_a_checkout_is_none(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_sees_uncommitted_files(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert git_state(tmp_path) == {"commit": None, "dirty": False}  # no commit yet
    (tmp_path / "new.py").write_text("x = 1\n")
    assert git_state(tmp_path)["dirty"] is True


def test_stage_fields_are_required_and_recorded(tmp_path):
    with pytest.raises(TypeError, match="data_fingerprint"):
        stage_manifest(**{k: 0 for k in STAGE_FIELDS if k != "data_fingerprint"})
    fields = {k: 1 for k in STAGE_FIELDS}
    record_manifest(tmp_path, RunConfig(name="r"), 1, "pretrain", fields)
    record_manifest(tmp_path, RunConfig(name="r"), 1, "finetune", {**fields, "lr": 2})
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["run"] == "r" and manifest["stages"]["pretrain"] == fields
    assert manifest["stages"]["finetune"]["lr"] == 2


def test_the_layout_names_the_job_s_hosts_and_interface() -> None:
    """In a Slurm step: the job's node list; elsewhere this host, the world size on it."""
    step = {"SLURM_PROCID": "3", "SLURM_JOB_NODELIST": "mixmim-node[1-2]", "LOCAL_WORLD_SIZE": "2",
            "GLOO_SOCKET_IFNAME": "mixmim0"}  # fmt: skip
    assert job_layout(4, step) == {"nodes": 2, "tasks_per_node": 2, "hosts": ["mixmim-node1", "mixmim-node2"],
                                   "network_interface": "mixmim0"}  # fmt: skip
    assert job_layout(2, {}) == {"nodes": 1, "tasks_per_node": 2, "hosts": [socket.gethostname()],
                                 "network_interface": None}  # fmt: skip
