"""The official checkpoints' key layouts -> ours (used by :func:`mixmim.weights.checkpoint.load_official_checkpoint`).

- **MixMIM, MAE**: flat keys; the encoder's are the backbone's, ``mask_token``/``decoder_*`` the decoder's.
- **SimMIM (ViT)**, microsoft/SimMIM ``models/simmim.py`` + ``vision_transformer.py``: ``encoder.*`` (with
  ``encoder.mask_token``), ``decoder.0.*``; BEiT-style blocks (below).
- **BEiT**, microsoft/unilm ``beit/modeling_pretrain.py``: flat keys, ``mask_token``, ``lm_head.*``;
  BEiT-style blocks.

BEiT-style blocks of a plain ViT, ``blocks.{i}`` or ``encoder.blocks.{i}`` (SimMIM's ViT copies BEiT's),
differ from timm's in three names: ``attn.q_bias`` and ``attn.v_bias`` (the official k bias is a constant
zero, ``torch.cat((q_bias, zeros, v_bias))``) become our ``attn.qkv.bias`` with a zero k part (a k bias adds
the same amount to every score of a query, so the softmax ignores it: the block computes the same function);
``gamma_1``/``gamma_2`` (layer scale) become ``ls1.gamma``/``ls2.gamma``; a per-block
``attn.relative_position_bias_table`` becomes ``rel_pos_bias.{i}.*`` (``PlainViT(rel_pos_bias="layer")``). A
shared ``rel_pos_bias.*`` loads into a per-block model by copying it to every block, as BEiT's and SimMIM's
fine-tuning do.

Where each key goes is decided against the target model's own keys (:func:`place_keys`), so a method's
``mask_token`` lands where that method keeps it (MixMIM/MAE: the decoder; SimMIM/BEiT: the method).
"""

from __future__ import annotations

import re

import torch

SWIN_REFUSAL = (
    "this is a Swin Transformer checkpoint (SimMIM's Swin release: shifted windows, keys {keys}); the suite's "
    "hierarchical backbone is MixMIM's encoder (no shifted windows, a different attention pattern), so its "
    "weights cannot be loaded without silently changing the model. Load SimMIM's ViT release "
    "(simmim_pretrain__vit_base__img224__800ep) into simmim_from_official_args(), or pre-train SimMIM on "
    "mixmim_base with the suite"
)
_SWIN_MASK = re.compile(r"(^|\.)layers\.\d+\.blocks\.\d+\.attn_mask$")
_BLOCK = re.compile(r"^(?P<pre>(encoder\.)?)blocks\.(?P<i>\d+)\.(?P<rest>.+)$")


def flat_to_method_key(key: str) -> str:
    """MixMIM's/MAE's flat pre-training key -> ours: ``decoder_*``/``mask_token`` under ``decoder.``, the rest
    under ``encoder.`` (already-prefixed keys are kept)."""
    if key.startswith(("encoder.", "decoder.")):
        return key
    return ("decoder." if key.startswith(("decoder_", "mask_token")) else "encoder.") + key


def refuse_swin(sd: dict[str, torch.Tensor]) -> None:
    """Raise ValueError for a shifted-window Swin checkpoint (its ``attn_mask`` buffers, or SimMIM's
    ``encoder.mask_token`` beside ``encoder.layers.*``)."""
    swin = [k for k in sd if _SWIN_MASK.search(k)]
    if not swin and "encoder.mask_token" in sd and any(k.startswith("encoder.layers.") for k in sd):
        swin = ["encoder.mask_token", next(k for k in sd if k.startswith("encoder.layers."))]
    if swin:
        raise ValueError(SWIN_REFUSAL.format(keys=", ".join(swin[:2])))


def beit_blocks_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BEiT-style block keys -> timm's (module docstring); other keys unchanged, prefixes kept."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _BLOCK.match(k)
        if m is None:
            out[k] = v
            continue
        pre, i, rest = m["pre"], m["i"], m["rest"]
        if rest == "attn.q_bias":
            v_bias = sd[f"{pre}blocks.{i}.attn.v_bias"]
            out[f"{pre}blocks.{i}.attn.qkv.bias"] = torch.cat([v, torch.zeros_like(v), v_bias])
        elif rest == "attn.v_bias":
            if f"{pre}blocks.{i}.attn.q_bias" not in sd:
                raise ValueError(f"{k} has no matching q_bias; the checkpoint is incomplete")
        elif rest in ("gamma_1", "gamma_2"):
            out[f"{pre}blocks.{i}.ls{rest[-1]}.gamma"] = v
        elif rest.startswith("attn.relative_position_"):
            out[f"{pre}rel_pos_bias.{i}.{rest.removeprefix('attn.')}"] = v
        else:
            out[k] = v
    return out


def place_keys(sd: dict[str, torch.Tensor], target: set[str], method: bool = True) -> dict[str, torch.Tensor]:
    """Put each key where ``target`` has it: as it is, under ``encoder.`` or ``decoder.``, or without
    ``encoder.`` (SimMIM's ``encoder.mask_token`` is our method's ``mask_token``). A key found nowhere keeps
    the flat-layout rule (``mask_token``/``decoder_*`` to the decoder, the rest to the encoder) so that a
    strict load names it. A shared relative position bias fills every per-block one the target has.
    ``method=False`` (a backbone target, flat keys): keys stay as they are, only the shared bias is spread."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        candidates = (k, f"encoder.{k}", f"decoder.{k}", k.removeprefix("encoder.")) if method else (k,)
        found = next((c for c in candidates if c in target), None)
        if found is None:
            shared = re.match(r"^(.*)rel_pos_bias\.(relative_position_\w+)$", k)
            per_block = [t for t in target if shared and re.fullmatch(
                rf"(encoder\.)?{re.escape(shared[1].removeprefix('encoder.'))}rel_pos_bias\.\d+\.{shared[2]}", t)]
            if per_block:
                out.update({t: v.clone() for t in per_block})
                continue
            found = flat_to_method_key(k) if method else k
        out[found] = v
    return out
