"""The shared backbones: MixMIM's hierarchical ViT and a plain ViT (MAE layout), one interface."""

from mixmim.backbones.attention import ATTENTION_IMPLS, attention_impl, set_attention_impl
from mixmim.backbones.hierarchical import MixMIMTransformer
from mixmim.backbones.interface import Backbone
from mixmim.backbones.registry import BACKBONE_SPECS, BACKBONES, create_backbone
from mixmim.backbones.vit import PlainViT

__all__ = [
    "ATTENTION_IMPLS", "BACKBONES", "BACKBONE_SPECS", "Backbone", "MixMIMTransformer", "PlainViT",
    "create_backbone", "load_official_checkpoint", "read_state_dict", "set_attention_impl", "attention_impl",
]

_WEIGHTS = ("load_official_checkpoint", "read_state_dict")  # mixmim.weights.checkpoint, exported lazily: it
# imports the backbones' resizing helpers, so an eager import here would be circular


def __getattr__(name: str):
    if name in _WEIGHTS:
        from mixmim.weights import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'mixmim.backbones' has no attribute '{name}'")
