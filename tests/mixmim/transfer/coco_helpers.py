"""Constants shared by the COCO transfer tests (a uniquely named module: ``conftest`` names collide)."""

from __future__ import annotations

import math

# Registered backbones shrunk to test size (same class, patch size and stage structure).
SMALL = {
    "mixmim_base": dict(embed_dim=16, depths=(1, 1, 3, 1), num_heads=(1, 1, 2, 2)),
    "mixmim_vit_base_patch16": dict(embed_dim=32, depth=2, num_heads=2),
}


def same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    """The same keys and values, NaN (COCOeval's empty size bins) equal to NaN."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
