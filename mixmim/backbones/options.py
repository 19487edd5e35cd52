"""The baselines' own ViT options from a run's ``model`` config (``docs/methods.md``, "switches").

``backbone_options(cfg.model)`` gives the ``PlainViT`` keyword arguments of the switches that differ from
the shared ViT; with every switch at its default it is empty, so the default model is built exactly as
before. The switches exist only on the plain ViT: on another backbone a changed switch is refused.
"""

from __future__ import annotations

from typing import Any

from mixmim.backbones.registry import BACKBONE_SPECS
from mixmim.backbones.vit import GLOBAL_POOL, REL_POS_BIAS, PlainViT

# config field -> (PlainViT argument, the shared ViT's value)
SWITCHES: dict[str, tuple[str, Any]] = {
    "layer_scale": ("init_values", 0.0),
    "abs_pos_emb": ("use_abs_pos_emb", True),
    "rel_pos_bias": ("rel_pos_bias", "none"),
    "global_pool": ("global_pool", "avg"),
    "fc_norm": ("fc_norm", False),
    "train_pos_embed": ("trainable_pos_embed", False),
}


def backbone_options(model_cfg: Any) -> dict[str, Any]:
    """``PlainViT`` keyword arguments for the switches of ``model_cfg`` that are not the default.

    Raises:
        ValueError: a switch set on a backbone that is not a plain ViT, or a value outside its choices.
    """
    changed = {name: getattr(model_cfg, name) for name, (_, default) in SWITCHES.items()
               if getattr(model_cfg, name) != default}
    if not changed:
        return {}
    spec = BACKBONE_SPECS.get(model_cfg.backbone)
    if spec is None or not issubclass(spec[0], PlainViT):
        raise ValueError(f"model.{', model.'.join(changed)} exist only on the plain ViT (mixmim_vit_*), not on "
                         f"{model_cfg.backbone}; reset them or choose a mixmim_vit_* backbone")
    for name, choices in (("rel_pos_bias", REL_POS_BIAS), ("global_pool", GLOBAL_POOL)):
        if getattr(model_cfg, name) not in choices:
            raise ValueError(f"model.{name}={getattr(model_cfg, name)!r}: choose one of {choices}")
    if model_cfg.layer_scale < 0:
        raise ValueError(f"model.layer_scale={model_cfg.layer_scale}: the layer-scale init must be >= 0 (0: none)")
    return {SWITCHES[name][0]: (value or None) if name == "layer_scale" else value for name, value in changed.items()}
