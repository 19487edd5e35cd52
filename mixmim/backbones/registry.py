"""Every backbone by name: one explicit dict, and the same names in timm's registry.

``import mixmim`` registers them, so ``timm.create_model("mixmim_base", num_classes=1000)`` works, and
``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`` loads a local
official checkpoint (encoder weights; the head is initialised as in the official fine-tuning).

Every name starts with ``mixmim_`` so that none can be taken for one of timm's own models (the plain ViTs
were ``vit_base_patch16`` & co., beside timm's ``vit_base_patch16_*``; the old names still build, with a
``DeprecationWarning``: ``mixmim.backbone_names``). Each model has a pretrained cfg (``default_cfgs``, no
``url``: nothing is downloaded) and follows timm's model contract: strict keyword arguments, ``device`` and
``dtype``, ``features_only=True`` (the stage maps; ViT: the last three blocks) and ``forward_intermediates``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from mixmim.backbone_names import canonical_backbone_name
from mixmim.backbones.hierarchical import MixMIMTransformer
from mixmim.backbones.interface import Backbone
from mixmim.backbones.vit import PlainViT
from mixmim.config import check_registry

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
    "mixmim_vit_base_patch16": (PlainViT, dict(img_size=224, patch_size=16, embed_dim=768, depth=12,
                                               num_heads=12)),
    "mixmim_vit_large_patch16": (PlainViT, dict(img_size=224, patch_size=16, embed_dim=1024, depth=24,
                                                num_heads=16)),
    "mixmim_vit_huge_patch14": (PlainViT, dict(img_size=224, patch_size=14, embed_dim=1280, depth=32,
                                               num_heads=16)),
    # 32 px, patch 4: an 8x8 token grid (mask units of 2x2 patches give MixMIM's 4x4 cells of 8 px).
    "mixmim_vit_tiny_patch4_32": (PlainViT, dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=2)),
}
_SOURCES = {  # where each family's architecture and (official) weights come from, for the pretrained cfgs
    MixMIMTransformer: dict(  # Sense-X/MixMIM ships no license file
        license="other", paper_ids="arXiv:2205.13137", origin_url="https://github.com/Sense-X/MixMIM",
        paper_name="MixMIM: Mixed and Masked Image Modeling for Efficient Visual Representation Learning"),
    PlainViT: dict(
        license="cc-by-nc-4.0", paper_ids="arXiv:2111.06377", origin_url="https://github.com/facebookresearch/mae",
        paper_name="Masked Autoencoders Are Scalable Vision Learners"),
}
SMALL_SIZES = ("mixmim_tiny_32", "mixmim_small_64", "mixmim_vit_tiny_patch4_32")  # ours: no released weights


def final_stride(name: str) -> int:
    """Stride (px) of a registered backbone's final map."""
    cls, spec = BACKBONE_SPECS[name]
    return spec["patch_size"] * (2 ** (len(spec["depths"]) - 1) if cls is MixMIMTransformer else 1)


def _default_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained cfg of a backbone: no ``url`` (weights load from a local file, see the module doc);
    evaluation as the official fine-tuning code (MAE's: bicubic, crop 224/256 up to 224 px, else 1.0)."""
    cls, spec = BACKBONE_SPECS[name]
    size = spec["img_size"]
    source = dict(_SOURCES[cls])
    if name in SMALL_SIZES:
        source.update(license="apache-2.0", origin_url="", notes=("mixmim-bench's test/debug size",))
    return dict(url="", num_classes=1000, input_size=(3, size, size), pool_size=(size // final_stride(name),) * 2,
                fixed_input_size=True, crop_pct=0.875 if size == 224 else 1.0, interpolation="bicubic",
                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj",
                classifier="head", **source)


# timm's register_model reads the pretrained cfgs of an entry point from ``default_cfgs`` of its module.
default_cfgs = generate_default_cfgs({name: _default_cfg(name) for name in BACKBONE_SPECS})


def _checkpoint_filter(state_dict: dict, model: Backbone) -> dict:
    """timm ``pretrained_filter_fn``: official pre-training/fine-tuning files -> this backbone."""
    from mixmim.weights.checkpoint import adapt_to_model, encoder_state_dict  # weights sit above the backbones

    sd = adapt_to_model(encoder_state_dict(state_dict), model)
    for key, value in model.state_dict().items():
        if key.startswith("head.") and key not in sd:
            sd[key] = value  # keep the freshly initialised head (official fine-tuning does the same)
    return sd


def _local_weights(overlay: dict[str, Any], cfg: Any) -> bool:
    """Whether a pretrained cfg overlay (or an explicit cfg) names a local file or state dict."""
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    return any(bool(src.get(key)) for src in (overlay, cfg if isinstance(cfg, dict) else {})
               for key in ("file", "state_dict"))


def create_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> Backbone:
    """Build a registered backbone; ``kwargs`` override its constructor arguments (e.g. num_classes).

    Also timm's factory arguments: ``pretrained_cfg(_overlay)``, ``features_only``/``out_indices``/
    ``feature_cls``, ``device`` and ``dtype`` (parameters and buffers are created there). ``img_size`` 0 is the
    backbone's default; off the default the cfg's ``input_size`` and ``pool_size`` follow it. An unknown
    argument raises ``TypeError``.
    """
    name = canonical_backbone_name(name)
    if name not in BACKBONE_SPECS:
        raise KeyError(f"unknown backbone '{name}'; registered: {', '.join(sorted(BACKBONE_SPECS))}")
    cls, spec = BACKBONE_SPECS[name]
    kwargs.setdefault("num_classes", 1000)
    img_size = kwargs.pop("img_size", None) or spec["img_size"]
    if not isinstance(img_size, int):  # timm passes a fixed input size as (H, W)
        if len(img_size) != 2 or img_size[0] != img_size[1]:
            raise ValueError(f"img_size={img_size}: the backbones take square inputs; pass one int")
        img_size = int(img_size[0])
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    if pretrained and not _local_weights(overlay, kwargs.get("pretrained_cfg")):
        raise ValueError(f"'{name}' has no weights to download (nothing is fetched): pass a local checkpoint with "
                         f"timm.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict(file=PATH)), or "
                         "load it with mixmim.weights.checkpoint.load_official_checkpoint(model, PATH)")
    if img_size != spec["img_size"]:
        overlay.update(input_size=(3, img_size, img_size), pool_size=(img_size // final_stride(name),) * 2)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    default_out = tuple(range(len(spec["depths"]))) if cls is MixMIMTransformer else 3  # stages; last 3 blocks
    feature_cfg = dict(feature_cls="getter", out_indices=kwargs.pop("out_indices", default_out))
    with torch.device(device) if device is not None else nullcontext():
        model = build_model_with_cfg(cls, name, pretrained, pretrained_cfg_overlay=overlay, feature_cfg=feature_cfg,
                                     pretrained_filter_fn=_checkpoint_filter,
                                     **{**spec, **kwargs, "img_size": img_size})
    return model.to(dtype=dtype) if dtype is not None else model


def _make_entrypoint(name: str) -> Callable[..., Backbone]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> Backbone:
        return create_backbone(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"timm entry point of the suite's backbone '{name}'."
    entrypoint.__module__ = __name__
    return entrypoint


BACKBONES: dict[str, Callable[..., Backbone]] = {name: _make_entrypoint(name) for name in BACKBONE_SPECS}
check_registry("model.backbone", BACKBONE_SPECS)
for _fn in BACKBONES.values():
    register_model(_fn)
