"""Every backbone by name: one explicit dict, and the same names in timm's registry.

``import mixmim`` registers them, so ``timm.create_model("mixmim_base", num_classes=1000)`` works, and
``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`` loads a local
official checkpoint (encoder weights; the head is initialised as in the official fine-tuning).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import build_model_with_cfg, register_model

from mixmim.backbones.checkpoint import adapt_to_model, encoder_state_dict
from mixmim.backbones.hierarchical import MixMIMTransformer
from mixmim.backbones.interface import Backbone
from mixmim.backbones.vit import PlainViT

_HIER = dict(patch_size=4, depths=(2, 2, 18, 2), mlp_ratio=4.0, qkv_bias=True)

# name -> (class, constructor arguments). Official sizes from Sense-X/MixMIM models_mixmim_ft.py and
# facebookresearch/mae models_mae.py; the small sizes are ours, for tests and the built-in experiment.
BACKBONE_SPECS: dict[str, tuple[type[Backbone], dict[str, Any]]] = {
    "mixmim_base": (MixMIMTransformer, dict(_HIER, img_size=224, embed_dim=128, num_heads=(4, 8, 16, 32),
                                            window_size=(14, 14, 14, 7))),
    "mixmim_large": (MixMIMTransformer, dict(_HIER, img_size=224, embed_dim=192, num_heads=(6, 12, 24, 48),
                                             window_size=(14, 14, 14, 7))),
    "mixmim_huge": (MixMIMTransformer, dict(_HIER, img_size=224, embed_dim=352, num_heads=(11, 22, 44, 88),
                                            window_size=(14, 14, 14, 7))),
    "mixmim_base_384": (MixMIMTransformer, dict(_HIER, img_size=384, embed_dim=128, num_heads=(4, 8, 16, 32),
                                                window_size=(16, 16, 24, 12))),
    "mixmim_large_384": (MixMIMTransformer, dict(_HIER, img_size=384, embed_dim=192,
                                                 num_heads=(6, 12, 24, 48), window_size=(16, 16, 24, 12))),
    # 32 px, patch 2, three stages (strides 2/4/8): a 4x4 grid of 8-px mixing cells; windows of 4 in
    # stages 1-2 (16x16 and 8x8 tokens), global in stage 3. For the built-in digits data.
    "mixmim_tiny_32": (MixMIMTransformer, dict(img_size=32, patch_size=2, embed_dim=32, depths=(1, 1, 2),
                                               num_heads=(1, 2, 4), window_size=(4, 4, 4))),
    # 64 px, patch 2, four stages (strides 2/4/8/16): a 4x4 grid of 16-px cells; windows 8/8/8/4.
    "mixmim_small_64": (MixMIMTransformer, dict(img_size=64, patch_size=2, embed_dim=32, depths=(1, 1, 2, 1),
                                                num_heads=(1, 2, 4, 8), window_size=(8, 8, 8, 4))),
    "vit_base_patch16": (PlainViT, dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12)),
    "vit_large_patch16": (PlainViT, dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16)),
    "vit_huge_patch14": (PlainViT, dict(img_size=224, patch_size=14, embed_dim=1280, depth=32, num_heads=16)),
    # 32 px, patch 4: an 8x8 token grid (mask units of 2x2 patches give MixMIM's 4x4 cells of 8 px).
    "vit_tiny_patch4_32": (PlainViT, dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=2)),
}


def _checkpoint_filter(state_dict: dict, model: Backbone) -> dict:
    """timm ``pretrained_filter_fn``: official pre-training/fine-tuning files -> this backbone."""
    sd = adapt_to_model(encoder_state_dict(state_dict), model)
    for key, value in model.state_dict().items():
        if key.startswith("head.") and key not in sd:
            sd[key] = value  # keep the freshly initialised head (official fine-tuning does the same)
    return sd


def _pretrained_cfg(name: str, img_size: int) -> dict[str, Any]:
    return dict(url="", num_classes=1000, input_size=(3, img_size, img_size), crop_pct=0.875,
                interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                first_conv="patch_embed.proj", classifier="head", architecture=name)


def create_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> Backbone:
    """Build a registered backbone; ``kwargs`` override its constructor arguments (e.g. num_classes)."""
    if name not in BACKBONE_SPECS:
        raise KeyError(f"unknown backbone '{name}'; registered: {', '.join(sorted(BACKBONE_SPECS))}")
    cls, spec = BACKBONE_SPECS[name]
    kwargs.setdefault("num_classes", 1000)
    kwargs = {k: v for k, v in kwargs.items() if not (k == "img_size" and not v)}
    cfg = kwargs.pop("pretrained_cfg", None)
    args = {**spec, **kwargs}
    cfg = cfg or _pretrained_cfg(name, args["img_size"])
    return build_model_with_cfg(cls, name, pretrained, pretrained_cfg=cfg,
                                pretrained_filter_fn=_checkpoint_filter, **args)


def _make_entrypoint(name: str) -> Callable[..., Backbone]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> Backbone:
        return create_backbone(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"timm entry point of the suite's backbone '{name}'."
    entrypoint.__module__ = __name__
    return entrypoint


BACKBONES: dict[str, Callable[..., Backbone]] = {name: _make_entrypoint(name) for name in BACKBONE_SPECS}
for _fn in BACKBONES.values():
    register_model(_fn)
