"""Precision resolution and the distributed environment parsing."""

import pytest
import torch

from mixmim.engine.distributed import DistEnv, env_from_variables, init_distributed
from mixmim.engine.precision import autocast, grad_scaler, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def test_auto_is_fp32_on_cpu():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert not grad_scaler("fp32", CPU).is_enabled()


def test_fp16_on_cpu_and_unknown_values_fail():
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="auto"):
        resolve_precision("fp8", CPU)


def test_bf16_autocast_on_cpu():
    with autocast("bf16", CPU):
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_env_from_torchrun_and_slurm_variables():
    assert env_from_variables({}) == DistEnv(0, 1, 0)
    assert env_from_variables({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1"}) == DistEnv(5, 8, 1)
    slurm = {"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}
    assert env_from_variables(slurm) == DistEnv(9, 16, 1)
    assert env_from_variables({**slurm, "WORLD_SIZE": "2", "RANK": "1"}).world_size == 2  # torchrun wins


def test_single_process_never_initialises_a_process_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    env = init_distributed()
    assert not env.distributed and env.is_main
    assert not torch.distributed.is_initialized()
