"""Fine-tuning parameter groups: layer-wise lr decay with MixMIM's official layer ids, head quirk switchable.

Official ``get_layer_id_for_mixmim`` (Sense-X/MixMIM ``util/lr_decay.py``), with ``L = sum(depths)`` blocks
(24 for MixMIM-B): embeddings 0; block ``j`` of stage ``i`` at ``sum(depths[:i]) + j + 1``; the downsample
of stage ``i`` at ``sum(depths[:i+1]) + 1``; everything else (final norm, head) at ``L``. The lr scale is
``layer_decay ** (L + 1 - id)``, so the head and final norm train at ``0.7``, not ``1.0``: the quirk
(mmpretrain, BEiT and MAE give them ``L + 1``).

The backbone's ``layer_id`` holds the table; the engine's
:func:`~mixmim.engine.optim.layer_decay_param_groups` builds the groups and, with
``finetune.official_head_decay=False``, moves the head and final norm to ``L + 1`` (scale 1.0).
"""

from __future__ import annotations

from mixmim.backbones import Backbone
from mixmim.config import FinetuneConfig
from mixmim.engine.optim import ParamGroup, layer_decay_param_groups


def finetune_param_groups(model: Backbone, cfg: FinetuneConfig) -> list[ParamGroup]:
    """AdamW groups for fine-tuning ``model``: weight decay ``cfg.weight_decay`` (not for 1-D parameters and
    ``no_weight_decay()`` names; with ``official_quirks=False`` not for the relative-position tables either),
    lr scale ``cfg.layer_decay ** (L + 1 - id)``, head quirk per ``cfg.official_head_decay``. Each group
    carries ``lr_scale``, ``layer_id`` and ``param_names``."""
    return layer_decay_param_groups(model, cfg.weight_decay, cfg.layer_decay,
                                    official_head_decay=cfg.official_head_decay, official_quirks=cfg.official_quirks)
