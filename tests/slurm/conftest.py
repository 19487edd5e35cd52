"""Fixtures for the launcher tests: the local Slurm cluster (or a skip), and fake sbatch/srun commands."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import submitit
from submitit.slurm.slurm import SlurmInfoWatcher

START_HINT = 'start it with: eval "$(scripts/slurm-cluster start)"'


def cluster_unavailable_reason() -> str | None:
    """Why the local Slurm cluster cannot be used, or None when ``sinfo`` sees an idle/busy node."""
    missing = [command for command in ("sinfo", "srun", "sbatch", "sacct") if shutil.which(command) is None]
    if missing:
        return f"Slurm commands not found ({', '.join(missing)}); {START_HINT}"
    conf = os.environ.get("SLURM_CONF", "")
    if not conf or not Path(conf).is_file():
        return f"SLURM_CONF is unset or not a file ({conf!r}); {START_HINT}"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20, check=True)
    except (subprocess.SubprocessError, OSError) as error:
        return f"the Slurm controller of {conf} does not answer ({error}); {START_HINT}"
    if not {"idle", "mix", "alloc"} & set(states.stdout.split()):
        return f"no usable node in the cluster of {conf} (sinfo: {states.stdout.strip()!r})"
    return None


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
