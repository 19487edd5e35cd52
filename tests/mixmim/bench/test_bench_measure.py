"""What the benchmark's figures count: FLOPs of the official dense attention, dense peaks of GPUs."""

from __future__ import annotations

import torch

from mixmim.backbones import create_backbone
from mixmim.backbones.attention import get_attention_impl
from mixmim.bench import attention_impl, method_flops, peak_tflops_for
from mixmim.pretrain.method import MixMIM


def test_flops_count_the_official_dense_attention_whatever_runs():
    method = MixMIM(create_backbone("mixmim_tiny_32", num_classes=0), decoder_dim=32, decoder_depth=1, decoder_heads=1)
    before = get_attention_impl()
    with attention_impl("grouped"):
        grouped = method_flops(method, 32)
    with attention_impl("official"):
        official = method_flops(method, 32)
    assert grouped == official > 0 and get_attention_impl() == before
    assert method.training


def test_peak_table_matches_device_names(monkeypatch):
    cuda = torch.device("cuda")
    for name, precision, peak in [
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H100 80GB HBM3", "fp16", 989.4),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("Tesla V100-SXM2-32GB", "bf16", None),
        ("Some GPU", "bf16", None),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_, n=name: n)
        assert peak_tflops_for(cuda, precision) == peak, name
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H200")
    assert peak_tflops_for(cuda, "fp32") == 494.7
    assert peak_tflops_for(torch.device("cpu"), "fp32") is None
