"""The step benchmark times ``Trainer.train_batch`` of the method's real pre-training task, and what it reports."""

from __future__ import annotations

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.backbones.attention import get_attention_impl
from mixmim.bench import StepOptions, bench_trainer, benchmark_step, benchmark_variants
from mixmim.config import RunConfig, apply_overrides
from mixmim.engine.optim import pretrain_param_groups
from mixmim.engine.schedule import lr_at_step
from mixmim.engine.trainer import Trainer
from mixmim.pretrain.method import MixMIM
from mixmim.pretrain.task import PretrainTask

CPU = torch.device("cpu")


def _tiny(seed: int = 0) -> MixMIM:
    torch.manual_seed(seed)
    encoder = create_backbone("mixmim_tiny_32", num_classes=0)
    return MixMIM(encoder, decoder_dim=32, decoder_depth=1, decoder_heads=1)


def _cfg(**overrides) -> RunConfig:
    return apply_overrides(RunConfig(), overrides)


def test_benchmark_step_reports_consistent_figures():
    method = _tiny()
    stats = benchmark_step(method, StepOptions(batch_size=4, img_size=32, steps=2, warmup=1, peak_tflops=2.0))
    assert stats.steps == 2 and stats.ms_min <= stats.ms_per_step <= stats.ms_max
    assert stats.images_per_s == pytest.approx(4 / (stats.ms_per_step / 1e3))
    assert stats.cpu_ms_per_step is not None and stats.memory_kind == "cpu_heap_in_use_step_peak+optimizer_state"
    assert stats.peak_memory_mib > 0 and stats.attention == get_attention_impl()
    assert stats.train_gflops_per_image == pytest.approx(3 * stats.forward_gflops_per_image)
    assert stats.achieved_tflops == pytest.approx(2 * stats.train_gflops_per_image * stats.images_per_s / 1e3)
    assert stats.mfu == pytest.approx(stats.achieved_tflops / 2.0)
    assert stats.optimizer == "adamw-fused" and stats.device == "cpu"
    assert stats.timed_step == "Trainer.train_batch" and stats.param_groups == 2 and stats.clip_grad == 0.0
    row = stats.as_row()
    assert row["params"] == sum(p.numel() for p in method.parameters())
    no_peak = benchmark_step(method, StepOptions(2, 32, steps=1, warmup=1, forward_flops=1e9), optimizer="default")
    assert no_peak.mfu is None and no_peak.forward_gflops_per_image == 1.0


def test_the_timed_step_is_trainer_train_batch_of_the_pretrain_task(monkeypatch):
    """Every step (warm-up and timed) is accum_iter calls of Trainer.train_batch on a batch already on the
    device, by a trainer over a PretrainTask whose AdamW runs as the variant says."""
    calls: list[tuple[str, bool, tuple[int, ...], str]] = []
    real = Trainer.train_batch

    def recorded(self, images, labels, corrupt=0):
        assert isinstance(self.task, PretrainTask)
        fused = bool(self.optimizer.defaults["fused"])
        calls.append((get_attention_impl(), fused, tuple(images.shape), images.device.type))
        return real(self, images, labels, corrupt)

    monkeypatch.setattr(Trainer, "train_batch", recorded)
    cfg = _cfg(**{"pretrain.accum_iter": 2})
    stats = benchmark_variants(
        _tiny(),
        [("grouped", "fused"), ("official", "single")],
        StepOptions(batch_size=2, img_size=32, steps=2, warmup=1, forward_flops=1e9, cfg=cfg),
    )
    assert len(calls) == 2 * (1 + 2) * 2  # variants x (warm-up + timed) x accum_iter
    assert {c[:2] for c in calls} == {("grouped", True), ("official", False)}
    assert {c[2:] for c in calls} == {((2, 3, 32, 32), "cpu")}
    assert all(s.accum_iter == 2 for s in stats)
    assert stats[0].images_per_s == pytest.approx(2 * 2 / (stats[0].ms_per_step / 1e3))  # a step is a group


def test_bench_trainer_runs_the_methods_groups_and_schedule_and_writes_nothing(tmp_path):
    cfg = _cfg(
        **{
            "pretrain.epochs": 2,
            "pretrain.warmup_epochs": 1,
            "pretrain.weight_decay": 0.03,
            "pretrain.official_quirks": False,
            "pretrain.lr": 1e-3,
            "pretrain.betas": (0.8, 0.9),
        }
    )
    method = _tiny()
    stage = tmp_path / "pretrain"
    trainer = bench_trainer(method, cfg, 2, 32, "fp32", CPU, stage, epoch_images=6, adamw="foreach")
    expected = pretrain_param_groups(method, 0.03, official_quirks=False)
    groups = trainer.optimizer.param_groups
    assert [g["param_names"] for g in groups] == [g["param_names"] for g in expected]
    assert [g["weight_decay"] for g in groups] == [0.03, 0.0] and all(g["betas"] == (0.8, 0.9) for g in groups)
    assert trainer.optimizer.defaults["foreach"] is True and not trainer.optimizer.defaults["fused"]
    r = trainer.recipe
    assert (r.batch_size, r.iters_per_epoch, r.total_steps, r.warmup_steps) == (2, 3, 6, 3)
    images, labels = torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    for step in range(5):  # through the warm-up into the cosine
        trainer.train_batch(images, labels)
        lr = lr_at_step(step, r.total_steps, r.warmup_steps, r.lr, r.min_lr)
        assert [g["lr"] for g in groups] == pytest.approx([lr * g["lr_scale"] for g in groups])
    assert trainer.position.global_step == 5
    assert not stage.exists() or not any(stage.iterdir())  # no checkpoint, no metric record


def _update_size(clip_grad: float, tmp_path) -> float:
    cfg = _cfg(
        **{
            "pretrain.clip_grad": clip_grad,
            "pretrain.weight_decay": 0.0,
            "pretrain.warmup_epochs": 0,
            "pretrain.lr": 1e-3,
        }
    )
    method = _tiny()
    before = [p.detach().clone() for p in method.parameters()]
    trainer = bench_trainer(method, cfg, 2, 32, "fp32", CPU, tmp_path / f"clip{clip_grad}", epoch_images=4)
    trainer.task.reseed(0)
    trainer.train_batch(
        torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.zeros(2, dtype=torch.long)
    )
    return sum((p.detach() - b).norm() ** 2 for p, b in zip(method.parameters(), before)).sqrt().item()


def test_bench_trainer_clips_as_the_recipe_says(tmp_path):
    """Clipped to a tiny norm, Adam's step is eps-limited: orders of magnitude smaller than unclipped."""
    free, clipped = _update_size(0.0, tmp_path), _update_size(1e-12, tmp_path)
    assert free > 0 and clipped < 1e-2 * free


def test_variants_are_interleaved_and_keep_the_default_impl():
    method = _tiny()
    before = get_attention_impl()
    stats = benchmark_variants(
        method,
        [("grouped", "fused"), ("official", "fused"), ("official", "single")],
        StepOptions(batch_size=2, img_size=32, steps=2, warmup=1, forward_flops=1e9),
    )
    assert [(s.attention, s.optimizer) for s in stats] == [
        ("grouped", "adamw-fused"),
        ("official", "adamw-fused"),
        ("official", "adamw-single"),
    ]
    assert all(s.steps == 2 and s.ms_per_step > 0 and s.first_step_s > 0 for s in stats)
    assert get_attention_impl() == before


def test_bound_variant_is_timed_but_never_becomes_the_default():
    method = _tiny()
    before = get_attention_impl()
    stats = benchmark_variants(
        method,
        [("grouped", "fused"), ("bound", "fused")],
        StepOptions(batch_size=2, img_size=32, steps=1, warmup=1, forward_flops=1e9),
    )
    assert [s.attention for s in stats] == ["grouped", "bound"] and stats[1].ms_per_step > 0
    assert get_attention_impl() == before


def test_step_options_reject_fp16_on_cpu_and_no_warmup_and_the_step_unknown_optimizers():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        StepOptions(2, 32, precision="fp16", steps=1, warmup=1)
    with pytest.raises(ValueError, match="warmup must be at least 1"):
        StepOptions(2, 32, steps=1, warmup=0)
    with pytest.raises(ValueError, match="optimizer"):
        benchmark_step(_tiny(), StepOptions(2, 32, steps=1, warmup=1, forward_flops=1e9), optimizer="sgd")


def test_the_trainer_owns_its_forward_module(tmp_path):
    """A compiled bench trainer gets its compiled forward from the task's ``compile`` setting (never assigned from
    outside: ``Trainer.model`` is read-only); the eager one runs the task's module itself."""
    eager = bench_trainer(_tiny(), _cfg(), 2, 32, "fp32", CPU, tmp_path / "eager" / "pretrain", epoch_images=4)
    assert eager.model is eager.task.module
    compiled = bench_trainer(_tiny(), _cfg(), 2, 32, "fp32", CPU, tmp_path / "compiled" / "pretrain",
                             epoch_images=4, compile="eager")  # fmt: skip
    assert compiled.model is not compiled.task.module and compiled.model._orig_mod is compiled.task.module
    with pytest.raises(AttributeError):
        eager.model = compiled.model
