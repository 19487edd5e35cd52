"""Fixtures for the launcher tests: the local Slurm cluster (or a skip), and fake sbatch/srun commands."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import submitit
from submitit.slurm.slurm import SlurmInfoWatcher

from slurm.testing import cluster_unavailable_reason  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skip the test unless the local Slurm cluster is up (``scripts/slurm-cluster start``)."""
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)


FAKE_SBATCH = """#!/bin/sh
# Fake sbatch: keeps a copy of the script and answers like sbatch, with job ids from 900001 on.
n=$(cat "{state}/counter" 2>/dev/null || echo 900000)
n=$((n + 1))
echo "$n" > "{state}/counter"
cp "$1" "{state}/sbatch-$n.sh"
echo "Submitted batch job $n"
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch`` and ``srun`` stand-ins on PATH; returns the folder where each submitted script is copied
    (``sbatch-<job id>.sh``). Nothing runs: this shows what would be submitted."""
    bin_dir, state = tmp_path / "fake-bin", tmp_path / "fake-sbatch"
    bin_dir.mkdir()
    state.mkdir()
    scripts = {"sbatch": FAKE_SBATCH.format(state=state), "srun": "#!/bin/sh\nexit 1\n"}
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # A private watcher, so that the fake job ids never reach a real sacct call of another test.
    monkeypatch.setattr(submitit.SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))
    return state
