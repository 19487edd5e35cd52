"""Names of the backbones that were renamed, and their current names (torch-free: config paths import it).

The plain ViTs were registered as ``vit_base_patch16`` & co. beside timm's own ``vit_base_patch16_*`` models
(timm's ViT layout, learned position embeddings, its weights): easy to mistake for them. Every name the suite
registers in timm now starts with ``mixmim_`` (``timm.list_models("mixmim_*")`` lists exactly ours); the old
names still build the same backbone, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings

DEPRECATED_BACKBONE_NAMES: dict[str, str] = {
    "vit_base_patch16": "mixmim_vit_base_patch16",
    "vit_large_patch16": "mixmim_vit_large_patch16",
    "vit_huge_patch14": "mixmim_vit_huge_patch14",
    "vit_tiny_patch4_32": "mixmim_vit_tiny_patch4_32",
}


def canonical_backbone_name(name: str) -> str:
    """The current name of a backbone; a deprecated name warns (``DeprecationWarning``) and is mapped."""
    current = DEPRECATED_BACKBONE_NAMES.get(name)
    if current is None:
        return name
    warnings.warn(f"backbone name '{name}' is deprecated: it reads like timm's own '{name}_*' models; use "
                  f"'{current}' (same backbone and weights)", DeprecationWarning, stacklevel=3)
    return current
