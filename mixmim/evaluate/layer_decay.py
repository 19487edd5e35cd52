"""Fine-tuning parameter groups: layer-wise lr decay with MixMIM's official layer ids, head quirk switchable.

Official ``get_layer_id_for_mixmim`` (Sense-X/MixMIM ``util/lr_decay.py``), with ``L = sum(depths)`` blocks
(24 for MixMIM-B): embeddings 0; block ``j`` of stage ``i`` at ``sum(depths[:i]) + j + 1``; the downsample
of stage ``i`` at ``sum(depths[:i+1]) + 1``; everything else (final norm, head) at ``L``. The lr scale is
``layer_decay ** (L + 1 - id)``, so the head and final norm train at ``0.7``, not ``1.0``: the quirk
(mmpretrain, BEiT and MAE give them ``L + 1``).

``finetune.layer_rule=swin`` uses SimMIM's ``get_swin_layer`` instead (:func:`swin_layer_id`; SimMIM on
the hierarchical backbone). The backbone's ``layer_id`` holds the table; the engine's
:func:`~mixmim.engine.optim.layer_decay_param_groups` builds the groups and, with
``finetune.official_head_decay=False``, moves the head and final norm to ``L + 1`` (scale 1.0).
"""

from __future__ import annotations

from collections.abc import Callable

from mixmim.backbones import Backbone
from mixmim.config import CHOICES, FinetuneConfig
from mixmim.engine.optim import ParamGroup, layer_decay_param_groups

LAYER_RULES = CHOICES["finetune.layer_rule"]  # declared once, on the config


def swin_layer_id(depths: list[int] | tuple[int, ...]) -> Callable[[str], int]:
    """SimMIM ``optimizer.get_swin_layer`` (``num_layers = L + 2``) for the hierarchical backbone's names:
    ``mask_token`` and the patch embedding 0; block j of stage i at ``sum(depths[:i]) + j + 1``; stage i's
    downsample at ``sum(depths[:i+1])`` (MixMIM's rule: one more); everything else (final norm, head) ``L + 1``."""

    def layer_id(name: str) -> int:
        if name == "mask_token" or name.startswith("patch_embed"):
            return 0
        if name.startswith("layers."):
            parts = name.split(".")
            stage = int(parts[1])
            if parts[3] in ("reduction", "norm"):
                return sum(depths[: stage + 1])
            return sum(depths[:stage]) + int(parts[3]) + 1
        return sum(depths) + 1

    return layer_id


def finetune_param_groups(model: Backbone, cfg: FinetuneConfig) -> list[ParamGroup]:
    """AdamW groups for fine-tuning ``model``: weight decay ``cfg.weight_decay`` (not for 1-D parameters and
    ``no_weight_decay()`` names; with ``official_quirks=False`` not for the relative-position tables either),
    lr scale ``cfg.layer_decay ** (L + 1 - id)``, head quirk per ``cfg.official_head_decay``, layer ids per
    ``cfg.layer_rule`` (``backbone``: the backbone's ``layer_id``; ``swin``: :func:`swin_layer_id`, whose head
    is already at ``L + 1``). Each group
    carries ``lr_scale``, ``layer_id`` and ``param_names``."""
    if cfg.layer_rule not in LAYER_RULES:
        raise ValueError(f"finetune.layer_rule={cfg.layer_rule!r}: use one of {', '.join(LAYER_RULES)}")
    swin = cfg.layer_rule == "swin"
    if swin and not hasattr(model, "depths"):
        raise ValueError("finetune.layer_rule=swin needs the hierarchical backbone (stages of blocks); the plain "
                         "ViT's rule is its own (finetune.layer_rule=backbone)")
    layer_id = swin_layer_id(model.depths) if swin else None
    return layer_decay_param_groups(model, cfg.weight_decay, cfg.layer_decay, layer_id=layer_id,
                                    official_head_decay=cfg.official_head_decay or swin,
                                    official_quirks=cfg.official_quirks)
