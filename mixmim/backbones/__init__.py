"""The shared backbones: MixMIM's hierarchical ViT and a plain ViT (MAE layout), one interface.

Loading official or suite checkpoints into them: :mod:`mixmim.weights.checkpoint`."""

from mixmim.backbones.attention import ATTENTION_IMPLS, attention_impl, set_attention_impl
from mixmim.backbones.hierarchical import MixMIMTransformer
from mixmim.backbones.interface import Backbone
from mixmim.backbones.registry import BACKBONE_SPECS, BACKBONES, create_backbone
from mixmim.backbones.vit import PlainViT

__all__ = [
    "ATTENTION_IMPLS", "BACKBONES", "BACKBONE_SPECS", "Backbone", "MixMIMTransformer", "PlainViT",
    "create_backbone", "set_attention_impl", "attention_impl",
]
