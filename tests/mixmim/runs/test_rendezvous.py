"""Where the ranks of a job meet: one rule (``mixmim.runs.rendezvous``) for the engine and the Slurm launcher."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mixmim.runs.rendezvous import PORT_BASE, PORT_SPAN, first_host, master_port, rendezvous

SLURM_JOB = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]"}


def test_the_port_is_in_range_and_stable_per_job() -> None:
    ids = ("1", "19999", "20000", "39999", "123456789", "123456789_7")
    assert all(PORT_BASE <= master_port(job_id) < PORT_BASE + PORT_SPAN for job_id in ids)
    assert master_port("4242") == master_port("4242") == PORT_BASE + 4242
    # Jobs with nearby ids (those likely to share a node at once) never share a port.
    assert len({master_port(str(job_id)) for job_id in range(90000, 90000 + PORT_SPAN)}) == PORT_SPAN
    with pytest.raises(ValueError, match="set MASTER_PORT"):
        master_port("none")


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [("localhost", "localhost"), ("gpu[07-08,10],cpu1", "gpu07"), ("a,b[1-2]", "a"), ("rack[2-3]-n[4,9]", "rack2-n4")],
)
def test_the_address_is_the_first_host_of_the_node_list(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


def test_a_slurm_job_meets_on_its_first_node_at_its_port() -> None:
    assert rendezvous(SLURM_JOB) == {"MASTER_ADDR": "gpu07", "MASTER_PORT": str(master_port("4242"))}


def test_the_environment_overrides_the_derived_values() -> None:
    assert rendezvous({**SLURM_JOB, "MASTER_PORT": "29500"}) == {"MASTER_ADDR": "gpu07", "MASTER_PORT": "29500"}
    assert rendezvous({"MASTER_ADDR": "head", "MASTER_PORT": "1234"}) == {"MASTER_ADDR": "head", "MASTER_PORT": "1234"}


def test_outside_a_job_the_message_says_what_to_set() -> None:
    with pytest.raises(RuntimeError, match="SLURM_JOB_NODELIST is not set.*set MASTER_ADDR and MASTER_PORT"):
        rendezvous({})
    with pytest.raises(RuntimeError, match="from job id ''"):
        rendezvous({"SLURM_JOB_ID": "", "SLURM_JOB_NODELIST": "n1"})


@pytest.fixture
def saved_environ() -> Iterator[None]:
    """Restore ``os.environ`` after a test whose code under test writes to it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("override", [{}, {"MASTER_PORT": "29555"}])
def test_the_engine_initialises_a_srun_task_at_the_rendezvous(
    saved_environ: None, monkeypatch: pytest.MonkeyPatch, override: dict[str, str]
) -> None:
    """A task started by ``srun`` (no torchrun): the engine exports the rendezvous and rank, then inits."""
    import torch.distributed as dist

    from mixmim.engine import distributed

    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(name, None)
    os.environ.update({**SLURM_JOB, "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", **override})
    seen: dict[str, str] = {}
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: seen.update(os.environ, backend=backend))
    env = distributed.init_distributed()
    assert (env.rank, env.world_size, env.local_rank) == (1, 2, 1)
    expected_port = override.get("MASTER_PORT", str(master_port("4242")))
    exported = {name: seen[name] for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "backend")}
    assert exported == {"MASTER_ADDR": "gpu07", "MASTER_PORT": expected_port, "RANK": "1", "WORLD_SIZE": "2",
                        "backend": "gloo"}  # fmt: skip
