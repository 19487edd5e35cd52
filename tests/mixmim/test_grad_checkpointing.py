"""Activation checkpointing: the same loss and gradients as without it, switched by ``model.grad_checkpointing``."""

from __future__ import annotations

import pytest
import torch

from baselines import build_method
from mixmim.config import RunConfig, apply_overrides


def _loss_and_grads(method, images):
    method.zero_grad(set_to_none=True)
    method.reseed(3)
    loss = method(images)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name,backbone", [("mixmim", "mixmim_tiny_32"), ("mae", "mixmim_vit_tiny_patch4_32")])
def test_checkpointing_is_exact_and_configurable(name, backbone):
    overrides = {"method.name": name, "model.backbone": backbone, "method.mask_unit": 8,
                 "method.decoder_dim": 32, "method.decoder_depth": 1, "method.decoder_heads": 1}
    torch.manual_seed(0)
    plain = build_method(apply_overrides(RunConfig(), overrides))
    torch.manual_seed(0)
    saving = build_method(apply_overrides(RunConfig(), {**overrides, "model.grad_checkpointing": True}))
    assert saving.state_dict().keys() == plain.state_dict().keys()
    saving.load_state_dict(plain.state_dict())
    flags = [getattr(m, "grad_checkpointing", None) for m in saving.encoder.modules()]
    assert True in flags and True not in [getattr(m, "grad_checkpointing", None) for m in plain.encoder.modules()]
    images = torch.randn(4, 3, 32, 32)
    (loss_a, grads_a), (loss_b, grads_b) = _loss_and_grads(plain, images), _loss_and_grads(saving, images)
    assert torch.equal(loss_a, loss_b) and grads_a.keys() == grads_b.keys()
    for key in grads_a:
        torch.testing.assert_close(grads_a[key], grads_b[key], rtol=1e-5, atol=1e-7, msg=key)
