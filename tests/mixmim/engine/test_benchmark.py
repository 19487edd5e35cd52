"""The step and data benchmarks: what they measure and how they derive throughput, FLOPs and MFU."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mixmim.backbones import create_backbone
from mixmim.backbones.attention import get_attention_impl
from mixmim.data import pretrain_transform
from mixmim.engine.benchmark import (
    attention_impl,
    benchmark_data,
    benchmark_step,
    benchmark_variants,
    build_optimizer,
    method_flops,
    peak_tflops_for,
)
from mixmim.method import MixMIM


def _tiny() -> MixMIM:
    encoder = create_backbone("mixmim_tiny_32", num_classes=0)
    return MixMIM(encoder, decoder_dim=32, decoder_depth=1, decoder_heads=1)


def test_benchmark_step_reports_consistent_figures():
    method = _tiny()
    stats = benchmark_step(method, batch_size=4, img_size=32, steps=2, warmup=1, peak_tflops=2.0)
    assert stats.steps == 2 and stats.ms_min <= stats.ms_per_step <= stats.ms_max
    assert stats.images_per_s == pytest.approx(4 / (stats.ms_per_step / 1e3))
    assert stats.cpu_ms_per_step is not None and stats.memory_kind == "cpu_heap_in_use_step_peak+optimizer_state"
    assert stats.peak_memory_mib > 0 and stats.attention == get_attention_impl()
    assert stats.train_gflops_per_image == pytest.approx(3 * stats.forward_gflops_per_image)
    assert stats.achieved_tflops == pytest.approx(2 * stats.train_gflops_per_image * stats.images_per_s / 1e3)
    assert stats.mfu == pytest.approx(stats.achieved_tflops / 2.0)
    assert stats.optimizer == "adamw-fused" and stats.device == "cpu"
    row = stats.as_row()
    assert row["params"] == sum(p.numel() for p in method.parameters())
    no_peak = benchmark_step(method, 2, 32, steps=1, warmup=1, forward_flops=1e9, optimizer="default")
    assert no_peak.mfu is None and no_peak.forward_gflops_per_image == 1.0


def test_variants_are_interleaved_and_keep_the_default_impl():
    method = _tiny()
    before = get_attention_impl()
    stats = benchmark_variants(method, [("grouped", "fused"), ("official", "fused"), ("official", "single")],
                               batch_size=2, img_size=32, steps=2, warmup=1, forward_flops=1e9)
    assert [(s.attention, s.optimizer) for s in stats] == [
        ("grouped", "adamw-fused"), ("official", "adamw-fused"), ("official", "adamw-single")]
    assert all(s.steps == 2 and s.ms_per_step > 0 and s.first_step_s > 0 for s in stats)
    assert get_attention_impl() == before


def test_bound_variant_is_timed_but_never_becomes_the_default():
    method = _tiny()
    before = get_attention_impl()
    stats = benchmark_variants(method, [("grouped", "fused"), ("bound", "fused")], batch_size=2, img_size=32,
                               steps=1, warmup=1, forward_flops=1e9)
    assert [s.attention for s in stats] == ["grouped", "bound"] and stats[1].ms_per_step > 0
    assert get_attention_impl() == before


def test_benchmark_step_rejects_fp16_on_cpu_and_no_warmup():
    with pytest.raises(ValueError, match="fp16"):
        benchmark_step(_tiny(), 2, 32, precision="fp16", steps=1, warmup=1)
    with pytest.raises(ValueError, match="warmup"):
        benchmark_step(_tiny(), 2, 32, steps=1, warmup=0)


def test_flops_count_the_official_dense_attention_whatever_runs():
    method = _tiny()
    before = get_attention_impl()
    with attention_impl("grouped"):
        grouped = method_flops(method, 32)
    with attention_impl("official"):
        official = method_flops(method, 32)
    assert grouped == official > 0 and get_attention_impl() == before
    assert method.training


def test_peak_table_matches_device_names(monkeypatch):
    cuda = torch.device("cuda")
    for name, precision, peak in [("NVIDIA H200", "bf16", 989.4), ("NVIDIA H100 PCIe", "bf16", 756.0),
                                  ("NVIDIA H100 80GB HBM3", "fp16", 989.4), ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
                                  ("Tesla V100-SXM2-32GB", "bf16", None), ("Some GPU", "bf16", None)]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_, n=name: n)
        assert peak_tflops_for(cuda, precision) == peak, name
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H200")
    assert peak_tflops_for(cuda, "fp32") == 494.7
    assert peak_tflops_for(torch.device("cpu"), "fp32") is None


def test_optimizer_variants():
    method = _tiny()
    assert build_optimizer(method, "fused", torch.device("cpu")).defaults["fused"] is True
    assert build_optimizer(method, "single", torch.device("cpu")).defaults["foreach"] is False
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(method, "sgd", torch.device("cpu"))


class _Images(torch.utils.data.Dataset):
    """Raw samples as a folder dataset gives them: (PIL image, label)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        return Image.new("RGB", (40, 48), color=(i * 20, 0, 0)), 0


def test_benchmark_data_counts_decoded_images():
    stats = benchmark_data(_Images(), pretrain_transform(32), workers=0, batches=2, batch_size=4)
    assert stats.images_per_s > 0 and stats.images_per_s_per_worker == stats.images_per_s
    assert stats.seconds > 0 and stats.batches == 2
