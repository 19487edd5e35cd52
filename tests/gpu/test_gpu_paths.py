"""The GPU paths (issue 15): mixed-precision training steps of every method on both backbones through the real
Trainer, the fp16 scaler's skipped step, the three attention implementations against an fp32 reference,
masks and noise without a host synchronisation, and ``bench`` timed with CUDA events.

Each check is parametrized over ``(device, precision)``: the CPU cases (fp32, bf16 autocast) run in CI, the
CUDA cases (bf16, fp16) carry the ``gpu`` marker and are skipped without CUDA (``scripts/gpu-check`` runs them).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from gpu_helpers import BACKBONES, METHOD_NAMES, device_cases, requires_cuda, small_method, small_trainer

from experiments.cli import main
from mixmim.backbones.attention import ATTENTION_IMPLS, WindowAttention
from mixmim.backbones.groups import WindowGroupMask
from mixmim.device_copy import to_device
from mixmim.engine.precision import autocast
from mixmim.pretrain.masking import gaussian_like

TRAIN_CASES = device_cases(cpu=("bf16",), cuda=("bf16", "fp16"))  # CPU fp32: the golden and engine tests
COMBOS = [(m, b) for b in BACKBONES for m in METHOD_NAMES]
COMBO_IDS = [f"{m}-{b}" for m, b in COMBOS]


@pytest.mark.parametrize("device, precision", TRAIN_CASES)
@pytest.mark.parametrize("name, backbone", COMBOS, ids=COMBO_IDS)
def test_training_steps_are_finite(name, backbone, device, precision, codebooks, tmp_path):
    trainer = small_trainer(name, backbone, codebooks, device, precision, tmp_path / "run")
    before = [p.detach().clone() for p in trainer.task.trainable.parameters()]
    metrics = trainer.run().metrics  # the stage's result (the stage runner writes it; the Trainer does not)
    assert metrics["steps"] == 2 and metrics["precision"] == precision
    assert math.isfinite(metrics["loss"]) and metrics["nonfinite_events"] == 0
    after = list(trainer.task.trainable.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a.detach()) for b, a in zip(before, after))  # the optimizer did step


def _inf_gradient_step(trainer, images, labels) -> None:
    """One micro-batch (an optimizer step: accum_iter 1) whose first parameter's gradient is made inf."""
    param = next(p for p in trainer.task.trainable.parameters() if p.requires_grad)
    hook = param.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    try:
        trainer.train_batch(images, labels)
    finally:
        hook.remove()


@pytest.mark.parametrize("device, precision", device_cases(cpu=("bf16",), cuda=("fp16",)))
@pytest.mark.parametrize("name, backbone", [("mixmim", "mixmim_tiny_32"), ("mae", "mixmim_vit_tiny_patch4_32")])
def test_scaler_skips_an_inf_step_and_halves_its_scale(name, backbone, device, precision, codebooks, tmp_path):
    trainer = small_trainer(name, backbone, codebooks, device, precision, tmp_path / "run")
    if device == "cpu":  # fp16 needs CUDA; the Trainer's step with an enabled scaler is the same code on the CPU
        trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)
    assert trainer.scaler.is_enabled()
    trainer.fresh_start()
    trainer.progress.start_epoch(0, 0)
    images, labels = torch.stack([trainer.task.train_set[i][0] for i in range(8)]), torch.zeros(8, dtype=torch.long)
    scale = trainer.scaler.get_scale()
    before = {n: p.detach().clone() for n, p in trainer.task.trainable.named_parameters()}
    _inf_gradient_step(trainer, images, labels)
    assert trainer.scaler.get_scale() == scale / 2
    for n, p in trainer.task.trainable.named_parameters():
        assert torch.equal(p.detach(), before[n]), f"{n} changed in a skipped step"
    assert all(len(state) == 0 or int(state["step"]) == 0 for state in trainer.optimizer.state.values())
    for _ in range(20):  # without the inf the steps apply once the scale fits fp16 (it halves at each overflow)
        trainer.train_batch(images, labels)
        if any(not torch.equal(p.detach(), before[n]) for n, p in trainer.task.trainable.named_parameters()):
            break
    else:
        pytest.fail(f"no update in 20 finite steps (scale {trainer.scaler.get_scale()})")


def _attention_inputs(device: str):
    """x [2, 4, 49, 64] (a 14x14 grid in 7x7 windows) and a group map with two groups and excluded tokens."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 49, 64, generator=gen)
    groups = torch.randint(0, 2, (1, 14, 14), generator=gen)
    groups[0, 0, :3] = -1  # excluded tokens: zero output as queries, never a key
    return x.to(device).requires_grad_(), groups


def _reference_and(impl: str):
    """The official attention (fp32, CPU) after a forward and backward, and a copy of it with ``impl``:
    (reference, attention, reference input, group map, reference output)."""
    reference = WindowAttention(64, 7, 4, impl="official")
    attn = WindowAttention(64, 7, 4, impl=impl)
    attn.load_state_dict(reference.state_dict())
    x_ref, groups = _attention_inputs("cpu")
    out_ref = reference(x_ref, WindowGroupMask.from_groups(groups, 7))
    out_ref.square().sum().backward()
    return reference, attn, x_ref, groups, out_ref


@pytest.mark.parametrize("device, precision", device_cases(cpu=("fp32", "bf16"), cuda=("fp32", "bf16", "fp16")))
@pytest.mark.parametrize("impl", ATTENTION_IMPLS)
def test_attention_paths_match_the_fp32_reference(impl, device, precision):
    reference, attn, x_ref, groups, out_ref = _reference_and(impl)
    attn.to(device)
    x, _ = _attention_inputs(device)
    mask = WindowGroupMask.from_groups(groups, 7, device)  # a host map, as the methods pass it
    if impl == "grouped":
        assert mask.segment_plan() is not None and mask.segment_plan().inverse.device.type == device
    with autocast(precision, torch.device(device)):
        out = attn(x, mask)
    out.float().square().sum().backward()
    tolerance = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 1e-2}[precision]  # of the reference's largest value
    for got, want in ((out.float(), out_ref), (x.grad.float(), x_ref.grad)):
        assert torch.isfinite(got).all()
        error = (got.cpu() - want).abs().max() / want.abs().max()
        assert error < tolerance, f"{impl} {precision} on {device}: relative error {error:.2e}"
    table = attn.relative_position_bias_table.grad.cpu()
    error = (table - reference.relative_position_bias_table.grad).abs().max()
    assert error < tolerance * reference.relative_position_bias_table.grad.abs().max()


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("precision", ("bf16", "fp16"))
@pytest.mark.parametrize("impl", ("grouped", "sdpa"))
def test_masked_attention_reaches_the_fused_memory_efficient_kernel(impl, precision):
    """With SDPA restricted to its memory-efficient kernel (flash takes no additive bias, and the relative-position
    bias is in every block) the group mask still runs, forward and backward, equal to the official formulation:
    ``grouped`` as packed (window, group) segments with the bias, ``sdpa`` folded into the additive mask. A path
    that needed the math fallback would raise "No available kernel" here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, attn, x_ref, groups, out_ref = _reference_and(impl)
    attn.cuda()
    x, _ = _attention_inputs("cuda")
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]), autocast(precision, torch.device("cuda")):
        out = attn(x, WindowGroupMask.from_groups(groups, 7, "cuda"))
    out.float().square().sum().backward()
    for got, want in ((out.float(), out_ref), (x.grad.float(), x_ref.grad)):
        assert (got.cpu() - want).abs().max() / want.abs().max() < 3e-2


@pytest.mark.parametrize("name, backbone", COMBOS, ids=COMBO_IDS)
def test_forward_backward_read_nothing_back_from_the_device(name, backbone, codebooks):
    """On the meta device a tensor has no values: any host read (``.item()``, ``.cpu()``, ``bool(t)``) raises.
    Masks and plans are drawn on the host and copied, so a whole forward and backward runs there."""
    method = small_method(name, backbone, codebooks).to("meta")
    out = method(torch.empty(4, 3, 32, 32, device="meta"))
    out["loss"].backward()
    assert out["loss"].device.type == "meta"


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("name, backbone", [*COMBOS, ("mixmim-noise", "mixmim_tiny_32")],
                         ids=[*COMBO_IDS, "mixmim-noise-mixmim_tiny_32"])  # fmt: skip
def test_cuda_step_has_no_host_synchronisation(name, backbone, codebooks):
    extra = {"mask_type": "noise"} if name == "mixmim-noise" else {}
    method = small_method(name.split("-")[0], backbone, codebooks, **extra).cuda()
    images = torch.randn(4, 3, 32, 32, device="cuda")
    with autocast("bf16", torch.device("cuda")):
        method(images)["loss"].backward()  # warm-up: allocators, cuBLAS handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with autocast("bf16", torch.device("cuda")):
            loss = method(images)["loss"]
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


@pytest.mark.parametrize("device, precision", device_cases(cpu=("fp32",), cuda=("fp32",)))
def test_host_tensors_reach_the_device_without_blocking(device, precision):
    host = torch.arange(12).reshape(3, 4)[:, ::2]  # not contiguous, as a view of a plan can be
    if device == "cpu":
        assert to_device(host, "cpu") is host  # nothing copied on the CPU
        return
    torch.cuda.set_sync_debug_mode("error")  # a pageable .to("cuda") would synchronise here
    try:
        on_device = to_device(host, device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert on_device.is_cuda and torch.equal(on_device.cpu(), host)


@pytest.mark.parametrize("device, precision", device_cases(cpu=("fp32", "bf16"), cuda=("bf16", "fp16")))
def test_noise_is_drawn_where_the_tokens_are_and_follows_the_generator(device, precision):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    tokens = torch.zeros(2, 16, 8, device=device, dtype=dtype)
    noise = gaussian_like(tokens, torch.Generator().manual_seed(3))
    assert noise.device == tokens.device and noise.dtype == dtype and noise.shape == tokens.shape
    assert torch.equal(noise, gaussian_like(tokens, torch.Generator().manual_seed(3)))  # resume, reseed
    if device == "cpu":  # the CPU draw is the generator's own, as before (the golden losses)
        assert torch.equal(noise, torch.randn(tokens.shape, generator=torch.Generator().manual_seed(3)).to(tokens))
    else:
        assert 0.5 < noise.float().std().item() < 1.5


BENCH = ["--backbone", "mixmim_tiny_32", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--set",
         "method.mask_unit=8", "--set", "method.decoder_dim=32", "--set", "method.decoder_depth=1", "--set",
         "method.decoder_heads=1", "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize("device, precision", device_cases(cpu=("bf16",), cuda=("bf16",)))
def test_bench_rows(device, precision, tmp_path, capsys, monkeypatch):
    timed = []
    if device == "cuda":  # the steps are timed with CUDA events, read after the final synchronisation
        real = torch.cuda.Event.elapsed_time
        monkeypatch.setattr(torch.cuda.Event, "elapsed_time", lambda self, end: timed.append(1) or real(self, end))
    methods = "mixmim,simmim" if device == "cuda" else "mixmim"  # CI time: one method on the CPU
    args = ["bench", "--methods", methods, "--device", device, "--precision", precision, *BENCH]
    assert main([*args, "--output", str(tmp_path)]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for f in (tmp_path / "bench").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert {r["method"] for r in rows} == set(methods.split(","))
    for row in rows:
        assert row["device"] == device and row["precision"] == precision
        assert row["ms_per_step"] > 0 and row["images_per_s"] > 0 and row["peak_memory_mib"] > 0
        if device == "cuda":
            assert row["memory_kind"] == "cuda_allocated"
            assert row["mfu"] is None or 0 < row["mfu"] < 1  # None: a GPU without a datasheet peak
        else:
            assert row["mfu"] is None
    assert device == "cpu" or timed
