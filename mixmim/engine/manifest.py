"""``manifest.json``: which code, on which hardware, with which recipe produced a run's numbers.

Run level (:func:`collect_manifest`): identity (experiment, run, method, backbone, setting, seed), git commit
and dirty flag of the checkout the ``mixmim`` package is imported from (``None`` when it is not a git
checkout, e.g. an installed wheel), versions (python, torch, torchvision, timm, CUDA, cuDNN), hardware (host,
CPU count, GPU names), world size and the job's layout (nodes, tasks per node, hosts, network interface). Stage
level (:func:`stage_manifest`): effective batch, absolute lr,
blr, lr_scale_base, precision, world size, epochs, seed, data root, fingerprint, class and image counts, wall time,
GPU-hours.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision

import mixmim
from mixmim.config import RunConfig
from mixmim.runs.hostlist import expand
from mixmim.runs.rundir import update_manifest

STAGE_FIELDS = (
    "effective_batch",
    "lr",
    "blr",
    "lr_scale_base",
    "precision",
    "world_size",
    "epochs",
    "seed",
    "data_root",
    "data_fingerprint",
    "data_classes",
    "data_images",
    "wall_time_s",
    "gpu_hours",
)


def package_root() -> Path:
    """The folder that holds the imported ``mixmim`` package (the repository root in a checkout)."""
    return Path(mixmim.__file__).resolve().parent.parent


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """``{commit, dirty}`` of the git checkout at ``path`` (default: :func:`package_root`).

    ``commit`` is None outside a git checkout or before the first commit; ``dirty`` is None outside a
    checkout, else whether ``git status`` shows changes (untracked files included).
    """
    cwd = str(path or package_root())

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if git("rev-parse", "--is-inside-work-tree") != "true":
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": None if status is None else bool(status)}


def versions() -> dict[str, str | None]:
    """Versions of the libraries that determine the numbers."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }


def hardware() -> dict[str, Any]:
    """Host, CPU and GPU description of this machine."""
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "gpu_count": len(gpus),
    }


def job_layout(world_size: int, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where the ``world_size`` ranks ran: ``{nodes, tasks_per_node, hosts, network_interface}``.

    In a Slurm job step (``SLURM_PROCID`` set) the hosts are the job's node list (``SLURM_JOB_NODELIST``),
    else this host; tasks per node are ``LOCAL_WORLD_SIZE`` (torchrun and the Slurm launcher export it), else
    ``world_size`` over the nodes; the interface is ``GLOO_SOCKET_IFNAME`` or ``NCCL_SOCKET_IFNAME`` (None:
    the libraries' default).
    """
    env = os.environ if environ is None else environ
    in_step = "SLURM_PROCID" in env and env.get("SLURM_JOB_NODELIST")
    hosts = expand(env["SLURM_JOB_NODELIST"]) if in_step else [socket.gethostname()]
    nodes = len(hosts)
    return {
        "nodes": nodes,
        "tasks_per_node": int(env.get("LOCAL_WORLD_SIZE") or max(1, world_size // nodes)),
        "hosts": hosts,
        "network_interface": env.get("GLOO_SOCKET_IFNAME") or env.get("NCCL_SOCKET_IFNAME") or None,
    }


def collect_manifest(cfg: RunConfig, world_size: int = 1) -> dict[str, Any]:
    """The run-level manifest fields (see the module docstring)."""
    return {
        "experiment": cfg.experiment,
        "run": cfg.name,
        "method": cfg.method.name,
        "backbone": cfg.model.backbone,
        "setting": dict(cfg.setting),
        "seed": cfg.seed,
        "git": git_state(),
        "versions": versions(),
        "hardware": hardware(),
        "world_size": world_size,
        "layout": job_layout(world_size),
        "command": " ".join(sys.argv),
    }


def stage_manifest(**fields: Any) -> dict[str, Any]:
    """The stage-level manifest fields; every name of :data:`STAGE_FIELDS` is required, extras are kept.

    Raises:
        TypeError: a required field is missing.
    """
    missing = [name for name in STAGE_FIELDS if name not in fields]
    if missing:
        raise TypeError(f"stage manifest is missing {missing}")
    return fields


def record_manifest(
    run_dir: str | Path, cfg: RunConfig, world_size: int, stage: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """Write the run-level fields and ``stages.<stage>`` into ``<run_dir>/manifest.json``; return it."""
    update_manifest(run_dir, collect_manifest(cfg, world_size))
    return update_manifest(run_dir, stage_manifest(**fields), stage=stage)
