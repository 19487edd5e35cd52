"""AdamW parameter groups as the official code builds them, the lr formula and the effective batch.

Two kinds of groups, both written against the backbone interface (``docs/architecture.md``):

- **Pre-training** (:func:`pretrain_param_groups`, MAE's ``add_weight_decay``): no weight decay for 1-D
  parameters, biases and the method's official skip list (``official_no_weight_decay()``: MixMIM and MAE
  none, SimMIM and BEiT theirs). *Official quirk* (``pretrain.official_quirks=True``): ``mask_token``
  ``[1, 1, C]`` and the relative-position bias tables are 2-D, so they **are** decayed (SimMIM's Swin list
  exempts its ``mask_token``). With the quirk off, every name returned by a ``no_weight_decay()`` or
  ``no_weight_decay_keywords()`` of the model or of any submodule is skipped too.
- **Fine-tuning** (:func:`layer_decay_param_groups`, BEiT/MAE/MixMIM ``param_groups_lrd``): one group per
  (layer id, decay/no decay); lr scale ``layer_decay ** (num_layers + 1 - layer_id)`` with
  ``layer_id = model.layer_id(name)`` in ``[0, num_layers + 1]``. Each backbone's ``layer_id`` reproduces its
  official table. *Official quirk* of MixMIM (``finetune.official_head_decay=True``): its ``lr_decay.py``
  puts the head and the final norm at id ``num_layers`` (the last block's id), so their scale is
  ``layer_decay ** 1`` = 0.7 (MAE's ViT gives them ``num_layers + 1``, scale 1.0). With
  ``official_head_decay=False`` the head and final norm (top-level ``head``, ``norm``, ``fc_norm``) get id
  ``num_layers + 1`` (scale 1.0, as mmpretrain) whatever the backbone says.

Every group carries ``lr_scale`` (multiplied into the scheduled lr by :func:`set_lr`) and
``param_names``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from mixmim.engine.schedule import LrSchedule

ParamGroup = dict[str, Any]
HEAD_MODULES = ("head", "norm", "fc_norm")  # top-level modules after the last block (timm naming)


def effective_batch_size(batch_size: int, world_size: int, accum_iter: int) -> int:
    """Images per optimizer step: per-GPU batch x world size x gradient-accumulation steps."""
    return batch_size * world_size * accum_iter


def absolute_lr(blr: float, effective_batch: int, lr_scale_base: int, lr: float = 0.0) -> float:
    """``lr`` when it is set (> 0), else the linear scaling rule ``blr * effective_batch / lr_scale_base``."""
    return lr if lr > 0 else blr * effective_batch / lr_scale_base


def no_weight_decay_names(model: nn.Module, keywords: bool = True) -> set[str]:
    """Full names of parameters listed by ``no_weight_decay()`` of ``model`` or any of its submodules (and,
    with ``keywords``, by ``no_weight_decay_keywords()``: the clean-recipe exclusions the official code lacks).

    An entry ``e`` of submodule ``prefix`` matches the parameter ``prefix + e`` and every parameter under
    ``prefix`` whose name ends in ``"." + e`` (so ``relative_position_bias_table`` covers all blocks).
    """
    listed: list[tuple[str, str]] = []
    for module_name, module in model.named_modules():
        if callable(getattr(module, "no_weight_decay", None)):
            prefix = f"{module_name}." if module_name else ""
            listed.extend((prefix, entry) for entry in module.no_weight_decay())
        if keywords and callable(getattr(module, "no_weight_decay_keywords", None)):
            prefix = f"{module_name}." if module_name else ""
            listed.extend((prefix, entry) for entry in module.no_weight_decay_keywords())
    names = set()
    for name, _ in model.named_parameters():
        for prefix, entry in listed:
            if name == prefix + entry or (name.startswith(prefix) and name.endswith("." + entry)):
                names.add(name)
    return names


def _grouped(entries: Iterable[tuple[str, str, nn.Parameter, dict[str, Any]]]) -> list[ParamGroup]:
    """Collect ``(group key, name, param, group options)`` entries into param groups, in first-seen order."""
    groups: dict[str, ParamGroup] = {}
    for key, name, param, options in entries:
        group = groups.setdefault(key, {"params": [], "param_names": [], **options})
        group["params"].append(param)
        group["param_names"].append(name)
    return list(groups.values())


def pretrain_param_groups(model: nn.Module, weight_decay: float, official_quirks: bool = True) -> list[ParamGroup]:
    """Decay / no-decay groups for pre-training (see the module docstring for the quirk).

    Frozen parameters (``requires_grad=False``, e.g. fixed sin-cos position embeddings) are left out.
    """
    official = getattr(model, "official_no_weight_decay", None)
    skip = (set(official()) if callable(official) else set()) if official_quirks else no_weight_decay_names(model)

    def entries():
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if param.ndim <= 1 or name.endswith(".bias") or name in skip:
                yield "no_decay", name, param, {"weight_decay": 0.0, "lr_scale": 1.0}
            else:
                yield "decay", name, param, {"weight_decay": weight_decay, "lr_scale": 1.0}

    return _grouped(entries())


def is_head_param(name: str) -> bool:
    """Whether ``name`` belongs to the head or the final norm (a top-level module of :data:`HEAD_MODULES`)."""
    return name.split(".", 1)[0] in HEAD_MODULES


def layer_decay_param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float,
    official_head_decay: bool = True,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
    is_head: Callable[[str], bool] = is_head_param,
    official_quirks: bool = True,
) -> list[ParamGroup]:
    """Layer-wise lr decay groups for fine-tuning (see the module docstring for the official head quirk).

    Args:
        model: the network; by default ``model.layer_id`` and ``model.num_layers`` give the layer ids.
        weight_decay: for parameters with 2+ dims that no ``no_weight_decay()`` lists.
        layer_decay: per-layer lr factor (official 0.7); 1.0 turns layer decay off.
        official_head_decay: keep the backbone's ids for the head and final norm (MixMIM: ``num_layers``,
            scale ``layer_decay``); False puts them at ``num_layers + 1`` (scale 1.0).
        layer_id: maps a parameter name of ``model`` to its id in ``[0, num_layers + 1]`` (for wrappers whose
            names carry a prefix, e.g. ``lambda n: encoder.layer_id(n.removeprefix("encoder."))``).
        num_layers: blocks in all stages (MixMIM-B: 24).
        is_head: which parameter names are the head and final norm (for ``official_head_decay=False``).
        official_quirks: skip only what ``no_weight_decay()`` lists (the official fine-tuning decays MixMIM's
            relative-position tables); False also skips ``no_weight_decay_keywords()``.
    """
    layer_id = layer_id or model.layer_id
    num_layers = model.num_layers if num_layers is None else num_layers
    skip = no_weight_decay_names(model, keywords=not official_quirks)

    def entries():
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            lid = num_layers + 1 if not official_head_decay and is_head(name) else layer_id(name)
            if not 0 <= lid <= num_layers + 1:
                raise ValueError(f"layer_id({name!r}) = {lid} is outside [0, {num_layers + 1}]")
            no_decay = param.ndim <= 1 or name in skip
            options = {
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": layer_decay ** (num_layers + 1 - lid),
                "layer_id": lid,
            }
            yield f"layer_{lid}_{'no_decay' if no_decay else 'decay'}", name, param, options

    return sorted(_grouped(entries()), key=lambda g: (g["layer_id"], g["weight_decay"]))


FUSED_DEVICES = ("cuda", "cpu")  # torch >= 2.4 has a fused AdamW kernel for both
ADAMW_IMPLS = ("auto", "fused", "foreach", "single", "default")  # how build_adamw runs the update


def build_adamw(param_groups: list[ParamGroup], betas: tuple[float, float] = (0.9, 0.999),
                implementation: str = "auto") -> torch.optim.AdamW:  # fmt: skip
    """AdamW over ``param_groups``; the lr is set every step by :func:`set_lr` (it starts at 0).

    ``implementation`` (:data:`ADAMW_IMPLS`): ``auto`` (what training uses) is fused (one kernel over all
    parameters) when every parameter is a floating tensor on a CUDA or CPU device, else torch's own choice;
    ``fused`` insists on the fused kernel, ``foreach`` on the multi-tensor update, ``single`` on a loop over
    parameters, and ``default`` is torch's own choice (foreach on CUDA, the loop on the CPU: what the official
    code gets). All give the same update to within rounding (fused vs default: 2e-8 after 20 steps of a small
    MLP). The optimizer step of MixMIM-B pre-training on 2 CPU cores: 107 ms fused, 345 ms per-parameter loop
    (torch's default on the CPU), 393 ms foreach (its default on CUDA). Build it after moving the model to
    its device.
    """
    if implementation not in ADAMW_IMPLS:
        raise ValueError(f"AdamW implementation must be one of {ADAMW_IMPLS}, got {implementation!r}")
    params = [p for group in param_groups for p in group["params"]]
    devices = {p.device.type for p in params}
    fusable = len(devices) == 1 and devices <= set(FUSED_DEVICES) and all(p.is_floating_point() for p in params)
    options = {"auto": {"fused": fusable or None}, "fused": {"fused": True}, "foreach": {"foreach": True},
               "single": {"foreach": False}, "default": {}}[implementation]  # fmt: skip
    return torch.optim.AdamW(param_groups, lr=0.0, betas=tuple(betas), **options)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr * group['lr_scale']`` (scale 1 when a group has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def grad_norm(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all gradients of ``parameters`` (a float32 device scalar; zero without gradients), as
    ``clip_grad_norm_`` computes it (one foreach norm per group of tensors), without clipping or a host read."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)  # what clip_grad_norm_ runs; one kernel per device and dtype
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def set_scheduled_lr(optimizer: torch.optim.Optimizer, schedule: LrSchedule, step: int) -> None:
    """Set every group's lr to ``schedule.lr(step, group['lr_scale'])``: the ``cosine`` schedules scale the
    whole value (as :func:`set_lr`), the timm-style ones only the peak (their warm-up start and floor are
    absolute, :mod:`mixmim.engine.schedule`)."""
    for group in optimizer.param_groups:
        group["lr"] = schedule.lr(step, group.get("lr_scale", 1.0))


def step_unless(optimizer: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
    """``optimizer.step()``, a no-op where ``found_inf`` (a float32 scalar on the parameters' device) is 1.0,
    decided on the device: no host read.

    Optimizers that take ``found_inf`` themselves (torch's fused Adam, AdamW and SGD: the contract GradScaler
    uses, ``_step_supports_amp_scaling``) skip in their kernel: parameters and state (``step`` included) stay
    unchanged. Any other optimizer (the linear probe's LARS) steps and is reverted with ``torch.where``: its
    parameters and the tensor state it held on their device before; state the step created (a first momentum
    buffer) becomes zeros, which SGD and LARS without dampening treat as no buffer. That costs a copy of the
    parameters and state per step, so it suits small optimizers (a probe's head).
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.grad_scale, optimizer.found_inf = None, found_inf
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale, optimizer.found_inf
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    device = found_inf.device
    saved_params = [p.detach().clone() for p in params]
    saved_state = {
        (i, k): v.clone()
        for i, p in enumerate(params)
        for k, v in optimizer.state.get(p, {}).items()
        if torch.is_tensor(v) and v.device == device
    }
    optimizer.step()
    skip = found_inf.bool()
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(torch.where(skip, saved_params[i], p))
            for k, v in optimizer.state.get(p, {}).items():
                if torch.is_tensor(v) and v.device == device:
                    v.copy_(torch.where(skip, saved_state.get((i, k), torch.zeros_like(v)), v))
