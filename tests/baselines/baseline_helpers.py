"""Shared pieces of the baselines tests: small configs, fixed data, a training loop, an interface-only proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines import CARDS, METHODS, build_method, method_defaults
from baselines.tokenizers import KMeansTokenizer
from mixmim.config import MethodConfig, RunConfig, apply_overrides
from mixmim.pretrain.method import PretrainMethod

BACKBONES = ("mixmim_tiny_32", "mixmim_vit_tiny_patch4_32")
METHOD_NAMES = tuple(METHODS)
SMALL_VOCAB = 16

# Each card's test sizes (small decoders, a 16-token vocabulary, 8-px SimMIM mask units at 32 px); no drop path
# (deterministic passes).
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {name: dict(card.test_settings) for name, card in CARDS.items()}


def fixed_images(n: int = 8, seed: int = 0, size: int = 32) -> torch.Tensor:
    """Smooth random images [n, 3, size, size] (bicubic-upsampled 4x4 noise + a ramp): learnable from context."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 4, 4, generator=gen)
    ramp = torch.linspace(-1, 1, size).view(1, 1, 1, size) * torch.randn(n, 3, 1, 1, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) + ramp


def fit_codebook(backbone: str, path: Path) -> Path:
    """A 16-token k-means codebook fitted on :func:`fixed_images` at ``backbone``'s token grid."""
    grid = (8, 8) if backbone.startswith("mixmim_vit_") else (4, 4)
    KMeansTokenizer.fit(fixed_images(32, seed=1), grid, SMALL_VOCAB, seed=0).save(path)
    return path


def codebook_for(name: str, backbone: str, codebooks: dict[str, Path]) -> Path | None:
    """The test codebook of ``backbone`` for a method that predicts visual tokens (its card's ``uses_tokenizer``)."""
    return codebooks[backbone] if CARDS[name].uses_tokenizer else None


def small_config(name: str, backbone: str, codebook: Path | None = None, **method: Any) -> RunConfig:
    """The source recipe of ``name`` on a small backbone, shrunk for tests (``method.<key>`` overrides)."""
    overrides = {**method_defaults(name), **SMALL_OVERRIDES[name], "model.backbone": backbone,
                 "model.drop_path": 0.0}
    if codebook is not None:
        overrides["method.tokenizer_path"] = str(codebook)
    overrides.update({f"method.{k}": v for k, v in method.items()})
    return apply_overrides(RunConfig(), overrides)


def small_method(name: str, backbone: str, codebook: Path | None = None, seed: int = 0, **method: Any):
    """A small method built through the registry, weights initialised from ``cfg.seed = seed``."""
    cfg = small_config(name, backbone, codebook, **method)
    cfg.seed = seed
    return build_method(cfg)


def train_losses(method: PretrainMethod, images: torch.Tensor, steps: int, lr: float = 1e-3) -> list[float]:
    """``steps`` AdamW steps (forward, backward, step) on the same batch; the losses before each step."""
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=lr,
                                  betas=(0.9, 0.95), weight_decay=0.05)
    losses = []
    for _ in range(steps):
        loss = method(images)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


BACKBONE_ATTRIBUTES = frozenset({
    "img_size", "patch_size", "grid_size", "stage_dims", "strides", "num_features", "num_layers", "num_classes",
    "supports_token_drop", "num_prefix_tokens", "out_grid_size",
})
BACKBONE_METHODS = frozenset({
    "embed", "forward_tokens", "forward_token_features", "forward_features", "forward_head", "forward_pyramid",
    "layer_id",
    "no_weight_decay",
})


class InterfaceOnly(nn.Module):
    """A backbone seen only through the ``Backbone`` interface: any other attribute raises."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.inner = backbone

    def __getattr__(self, name: str) -> Any:
        if name == "inner" or name.startswith("_"):
            return super().__getattr__(name)
        if name in BACKBONE_ATTRIBUTES or name in BACKBONE_METHODS:
            return getattr(super().__getattr__("inner"), name)
        raise AttributeError(f"'{name}' is not part of the Backbone interface (mixmim/backbones/interface.py)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def method_on_interface(name: str, cfg: RunConfig) -> PretrainMethod:
    """The method of ``cfg`` built by its registry builder around an interface-only backbone."""
    from mixmim.backbones import create_backbone

    torch.manual_seed(0)
    encoder = create_backbone(cfg.model.backbone, num_classes=0, drop_path_rate=cfg.model.drop_path)
    mcfg: MethodConfig = cfg.method
    return METHODS[name](InterfaceOnly(encoder), mcfg, None)
