"""Loading official and suite checkpoints into the backbones and pre-training methods.

Official MixMIM and MAE files are ``{"model": state_dict, ...}`` with flat keys: encoder keys as the
backbone's, plus ``mask_token`` and ``decoder_*`` for the pre-training model. Our pre-training methods
hold ``encoder.*`` and ``decoder.*``; :func:`official_to_method_keys` maps one onto the other. SimMIM's and
BEiT's layouts (``encoder.mask_token``, ``lm_head``, ``q_bias``/``v_bias``, layer scale, relative position
bias) are mapped in ``mixmim.weights.official_keys``, against the target model's own keys.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from mixmim.backbones.pos_embed import resize_pos_embed, resize_rel_pos_table
from mixmim.backbones.rel_pos_bias import is_cls_rel_pos_table, resize_cls_rel_pos_table
from mixmim.weights.official_keys import beit_blocks_to_timm, flat_to_method_key, place_keys, refuse_swin
from mixmim.weights.torchfile import load_torch_file

log = logging.getLogger(__name__)
DECODER_PREFIXES = ("decoder_", "mask_token")
PRETRAIN_ONLY_PREFIXES = (*DECODER_PREFIXES, "lm_head.")  # not part of an encoder (BEiT's head: lm_head)


def read_state_dict(path_or_sd: str | Path | dict) -> dict[str, torch.Tensor]:
    """A state dict from a file (official ``{"model": ...}``, ``{"state_dict": ...}`` or bare) or a dict."""
    # weights_only=True, official ``args`` namespaces allowed, clear errors for files that are not checkpoints
    sd = load_torch_file(path_or_sd) if isinstance(path_or_sd, (str, Path)) else path_or_sd
    for key in ("model", "state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError("not a state dict: expected a mapping of parameter names to tensors (or {'model': ...})")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def official_to_method_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official flat pre-training keys -> ours: ``decoder_*``/``mask_token`` under ``decoder.``, the rest
    under ``encoder.`` (already-prefixed keys are kept)."""
    return {flat_to_method_key(k): v for k, v in sd.items()}


def method_to_official_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_method_keys` (for exporting in the official layout)."""
    return {k.removeprefix("encoder.").removeprefix("decoder."): v for k, v in sd.items()}


def encoder_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder part of an official or suite pre-training state dict, with flat backbone keys."""
    out = {}
    for k, v in sd.items():
        if k.startswith("decoder.") or k.removeprefix("encoder.").startswith(PRETRAIN_ONLY_PREFIXES):
            continue
        out[k.removeprefix("encoder.")] = v
    return out


def adapt_to_model(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Resize position embeddings and relative-position tables to ``model`` (bicubic, as the official
    fine-tuning does for 384 px) and take ``relative_position_index`` buffers from the model."""
    target = model.state_dict()
    out = dict(sd)
    for k, v in sd.items():
        if k not in target or target[k].shape == v.shape:
            continue
        if k.endswith("relative_position_bias_table") and is_cls_rel_pos_table(v.shape[0]):
            out[k] = resize_cls_rel_pos_table(v, target[k].shape[0])  # BEiT/SimMIM ViT: 3 cls entries kept
        elif k.endswith("relative_position_bias_table"):
            out[k] = resize_rel_pos_table(v, target[k].shape[0])
        elif k.endswith("relative_position_index"):
            out[k] = target[k]
        elif k in ("absolute_pos_embed", "pos_embed", "decoder_pos_embed", "decoder.decoder_pos_embed",
                   "encoder.absolute_pos_embed", "encoder.pos_embed"):
            prefix = v.shape[1] - (int(round((v.shape[1]) ** 0.5)) ** 2)
            new_len = target[k].shape[1] - prefix
            side = int(round(new_len**0.5))
            out[k] = resize_pos_embed(v, (side, side), num_prefix=prefix)
            log.info("resized %s from %s to %s", k, tuple(v.shape), tuple(out[k].shape))
    return out


def load_official_checkpoint(model: nn.Module, path_or_sd, allow_missing_head: bool = True):
    """Load an official (or suite) checkpoint into a backbone or a pre-training method.

    Official layouts: MixMIM, MAE, SimMIM's ViT, BEiT (``mixmim.weights.official_keys``). A backbone gets
    the encoder weights (decoder, [MASK] token and ``lm_head`` dropped; ``head.*`` too when it has no head,
    ``num_classes=0``) and may miss only ``head.*`` (and
    ``fc_norm.*``, which replaces the final norm in MAE's and BEiT's fine-tuning: the checkpoint's ``norm.*``
    is then unused, as there); a pre-training method (anything with an ``encoder`` attribute) loads
    everything with ``strict=True``.

    Raises:
        ValueError: a shifted-window Swin checkpoint (SimMIM's Swin releases), which no suite model matches.
        RuntimeError: keys missing or unexpected beyond the head, listing them.
    """
    sd = read_state_dict(path_or_sd)
    refuse_swin(sd)
    sd = beit_blocks_to_timm(sd)
    target = set(model.state_dict())
    if hasattr(model, "encoder") and isinstance(model.encoder, nn.Module):
        sd = adapt_to_model(place_keys(sd, target), model)
        return model.load_state_dict(sd, strict=True)
    sd = place_keys(encoder_state_dict(sd), target, method=False)
    if getattr(model, "fc_norm", None) is not None and "norm.weight" not in target:
        sd = {k: v for k, v in sd.items() if not k.startswith("norm.")}
    if not any(k.startswith("head.") for k in target):  # num_classes=0: the checkpoint's classifier is dropped
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    sd = adapt_to_model(sd, model)
    result = model.load_state_dict(sd, strict=False)
    head = ("head.", "fc_norm.")
    missing = [k for k in result.missing_keys if not (allow_missing_head and k.startswith(head))]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"checkpoint does not match {type(model).__name__}: missing {missing}, unexpected "
            f"{result.unexpected_keys}; check that the backbone name and sizes match the checkpoint"
        )
    return result
