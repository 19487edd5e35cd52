"""The compiled training step (``pretrain.compile``, ``mixmim.engine.compile``): equal losses, no recompilation,
checkpoints and resume as eager.

On the CPU the backends are the cheap ones that test the wiring: ``aot_eager`` (dynamo's graphs and the
AOTAutograd backward, no code generation) for MixMIM on the hierarchical backbone and the resume, ``eager``
(dynamo's graphs alone) for the other methods; code generation (``inductor``) is what ``bench --compile`` and the
CUDA case run (``scripts/gpu-check``).
"""

from __future__ import annotations

import pytest
import torch
from gpu_helpers import BACKBONES, IMG, METHOD_NAMES, codebook_for, device_cases, small_config
from torch._dynamo.utils import counters

from baselines import build_method
from mixmim.config import ConfigError, apply_overrides
from mixmim.data import build_dataset, pretrain_transform
from mixmim.engine import checkpoint as ckpt_io
from mixmim.engine.compile import compile_module
from mixmim.engine.distributed import init_distributed
from mixmim.engine.trainer import Trainer
from mixmim.pretrain.task import STAGE, PretrainTask
from mixmim.runs.rundir import stage_dir

COMBOS = [(n, b) for b in BACKBONES for n in METHOD_NAMES]
STEPS = 4  # the first compiles; the other three draw new masks and must reuse its graphs


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Every test starts from empty compile caches and counters (and leaves them empty)."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    counters.clear()


def _trainer(name: str, backbone: str, codebooks, run_dir, device: str = "cpu", **overrides) -> Trainer:
    cfg = small_config(name, backbone, codebook_for(name, backbone, codebooks), **overrides)
    dataset = build_dataset(cfg.data, "train", pretrain_transform(IMG, cfg.data.crop_min_scale))
    env = init_distributed()
    torch.manual_seed(0)  # the same initial weights for every mode
    task = PretrainTask(build_method(cfg), dataset, cfg, run_dir, env, torch.device(device))
    return Trainer(task, cfg.seed, stage_dir(run_dir, STAGE), run_dir.name, env, task.device, log_every=1)


def _losses(trainer: Trainer, device: str) -> tuple[list[float], list[int]]:
    """Losses of STEPS optimizer steps on one batch (a new mask each step), and the graphs compiled after each."""
    trainer.task.reseed(0)
    images = torch.randn(8, 3, IMG, IMG, generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.zeros(8, dtype=torch.long, device=device)
    losses, graphs = [], []
    for _ in range(STEPS):
        losses.append(trainer.train_batch(images, labels).item())
        graphs.append(counters["stats"]["unique_graphs"])
    return losses, graphs


@pytest.mark.parametrize("name, backbone", COMBOS, ids=[f"{n}-{b}" for n, b in COMBOS])
def test_compiled_step_equals_eager_and_never_recompiles(name, backbone, codebooks, tmp_path):
    backend = "aot_eager" if (name, backbone) == ("mixmim", "mixmim_tiny_32") else "eager"
    eager, _ = _losses(_trainer(name, backbone, codebooks, tmp_path / "eager", **{"pretrain.compile": "off"}), "cpu")
    trainer = _trainer(name, backbone, codebooks, tmp_path / "compiled", **{"pretrain.compile": backend})
    assert trainer.model is not trainer.task.module and trainer.model._orig_mod is trainer.task.module
    compiled, graphs = _losses(trainer, "cpu")
    assert graphs[0] >= 1, "nothing was compiled"
    assert graphs[1:] == [graphs[0]] * (STEPS - 1), f"recompiled on a new mask: graphs after each step {graphs}"
    assert counters["stats"]["calls_captured"] > 0
    assert compiled == pytest.approx(eager, abs=1e-5, rel=0)
    assert len(set(eager)) == STEPS  # the masks (and the weights) did change between the steps


def test_compiled_checkpoints_have_eager_keys_and_resume_exactly(codebooks, tmp_path):
    """A compiled stage killed after 2 of 4 steps resumes to the weights of an uninterrupted compiled stage; its
    checkpoint holds the module's own keys (no ``_orig_mod.``), loadable by an eager stage."""
    compiled = {"pretrain.compile": "aot_eager"}

    def run(folder, max_steps, **overrides):
        _trainer("mixmim", "mixmim_tiny_32", codebooks, tmp_path / folder, **{"pretrain.max_steps": max_steps,
                                                                              **overrides}).run()  # fmt: skip
        return ckpt_io.load_checkpoint(stage_dir(tmp_path / folder, STAGE) / ckpt_io.LAST)

    eager = run("eager", 2, **{"pretrain.compile": "off"})
    half = run("resumed", 2, **compiled)
    assert list(half["model"]) == list(eager["model"])
    assert not any("_orig_mod" in key for key in half["model"])
    # the Trainer writes no result (the stage runner does): the second run resumes from the last checkpoint
    resumed, whole = run("resumed", 4, **compiled), run("whole", 4, **compiled)
    assert resumed["position"] == whole["position"]
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_compile_modes_are_checked():
    with pytest.raises(ConfigError, match="pretrain.compile"):
        apply_overrides(small_config("mixmim", "mixmim_tiny_32", None), {"pretrain.compile": "max-autotune"})
    with pytest.raises(ValueError, match="choose one of"):
        compile_module(torch.nn.Linear(2, 2), "cudagraphs")
    module = torch.nn.Linear(2, 2)
    assert compile_module(module, "off") is module


@pytest.mark.parametrize("device, precision", device_cases(cpu=(), cuda=("bf16",)))
def test_inductor_step_on_cuda_equals_eager(device, precision, codebooks, tmp_path):
    """The real backend on the GPU: MixMIM's bf16 step compiled with inductor, close to eager, no recompilation."""
    sets = {"pretrain.precision": precision}
    eager, _ = _losses(_trainer("mixmim", "mixmim_tiny_32", codebooks, tmp_path / "e", device, **sets), device)
    trainer = _trainer("mixmim", "mixmim_tiny_32", codebooks, tmp_path / "c", device,
                       **sets, **{"pretrain.compile": "inductor"})  # fmt: skip
    compiled, graphs = _losses(trainer, device)
    assert graphs[1:] == [graphs[0]] * (STEPS - 1)
    assert compiled == pytest.approx(eager, rel=2e-2)
