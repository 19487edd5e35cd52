"""The one interface every pre-training method and evaluation uses (docs/architecture.md, "Backbone").

Methods never touch a backbone's internals: they call :meth:`Backbone.embed`,
:meth:`Backbone.forward_tokens` and read the attributes below. ``tests/mixmim/test_backbone_interface.py``
checks the contract for every registered backbone.

The backbones are also timm models (``mixmim.backbones.registry``): :meth:`Backbone.forward_features` returns
timm's unpooled map ``[B, C, H, W]``, and ``forward_intermediates``, ``prune_intermediate_layers``,
``feature_info``, ``reset_classifier(num_classes, global_pool)``, ``get_classifier`` and ``head_hidden_size``
follow timm's contract (``tests/mixmim/test_timm_models.py`` runs timm's own model tests). The suite's
methods and evaluations use the token interface (:meth:`Backbone.forward_token_features`), which is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import trunc_normal_
from torch import nn


class Backbone(nn.Module):
    """Base class of the shared backbones.

    Attributes:
        img_size: default input resolution (px).
        patch_size: stride of :meth:`embed` (px per token side).
        grid_size: (H, W) token grid of :meth:`embed` at ``img_size``.
        stage_dims: channels of each stage's output.
        strides: stride of each stage's output (px).
        num_features: channels of :meth:`forward_tokens`' output (``stage_dims[-1]``).
        num_layers: transformer blocks in all stages (for layer-wise lr decay).
        num_classes: classes of the head (0: no head).
        supports_token_drop: whether ``forward_tokens(keep=...)`` is supported (plain ViT only).
        num_prefix_tokens: leading non-patch tokens (the ViT's cls token: 1; hierarchical: 0) that
            ``forward_tokens(..., return_prefix=True)`` keeps at the start of its output.
        in_chans: input channels.
        global_pool: ``"avg"`` (mean of the final tokens) or ``""`` (no pooling: ``forward`` returns the map).
        feature_info: timm's feature metadata, one ``dict(num_chs, reduction, module)`` per tap of
            ``forward_intermediates`` (stages of the hierarchical model, blocks of the ViT).
        official_frozen_params: persistent buffers that the official code holds as frozen parameters (the
            fixed sin-cos position embedding): :func:`mixmim.bench.flops.param_counts` counts them as the official
            parameter counts do.
    """

    img_size: int
    patch_size: int
    grid_size: tuple[int, int]
    stage_dims: tuple[int, ...]
    strides: tuple[int, ...]
    num_features: int
    num_layers: int
    num_classes: int
    supports_token_drop: bool = False
    num_prefix_tokens: int = 0
    in_chans: int = 3
    global_pool: str = "avg"
    global_pools: tuple[str, ...] = ("avg", "")  # what reset_classifier takes (the plain ViT adds "token")
    feature_info: list[dict]
    official_frozen_params: tuple[str, ...] = ()

    @property
    def out_grid_size(self) -> tuple[int, int]:
        """(H, W) of the final-stage tokens at ``img_size``."""
        return (self.img_size // self.strides[-1], self.img_size // self.strides[-1])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding: [B, 3, H, W] -> tokens [B, L, C0], before the position embedding."""
        raise NotImplementedError

    def forward_tokens(
        self,
        tokens: torch.Tensor,
        groups: torch.Tensor | None = None,
        group_embeds: Sequence[torch.Tensor] | None = None,
        keep: torch.Tensor | None = None,
        mask_attention: bool = True,
        return_prefix: bool = False,
    ) -> torch.Tensor:
        """Position embedding, every stage, final norm: [B, L, C0] -> [B, L_out, C_last].

        Args:
            tokens: output of :meth:`embed` (possibly mixed or with mask tokens substituted).
            groups: [G, Hg, Wg] integer group map (G = 1 or B) at a grid dividing every stage grid;
                a token attends only to tokens of its own group; negative ids are excluded tokens. On any
                device: a map on the host (as the methods pass it) is planned there and copied without a
                host synchronisation (``mixmim.device_copy``).
            group_embeds: one [num_groups, C_stage] tensor per stage, added by group at each stage start.
            keep: [B, L_keep] token indices to keep after the position embedding (token dropping).
            mask_attention: False uses ``groups`` only to index ``group_embeds`` (mix embedding without
                masked self-attention).
            return_prefix: also return the ``num_prefix_tokens`` leading tokens (MAE's decoder takes the
                cls token): [B, num_prefix_tokens + L_out, C_last]. No effect on a backbone without them.
        """
        raise NotImplementedError

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale maps for dense tasks: [B, 3, H, W] -> one [B, C_s, H_s, W_s] per stage."""
        raise NotImplementedError

    def forward_token_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> final tokens [B, L_out, C_last] (no groups): the suite's feature interface."""
        return self.forward_tokens(self.embed(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's unpooled features: [B, 3, H, W] -> the final map [B, C_last, H_out, W_out].

        A view of :meth:`forward_token_features`' tokens (same values and memory), so that
        ``forward_head(forward_features(x))`` pools exactly the tokens the suite's own path pools.
        """
        tokens = self.forward_token_features(x)  # [B, L_out, C]
        return tokens.transpose(1, 2).unflatten(2, self._token_grid(tokens.shape[1]))

    def _token_grid(self, length: int) -> tuple[int, int]:
        """(H, W) of ``length`` final tokens (``forward_tokens`` takes inputs of ``img_size`` only)."""
        h, w = self.out_grid_size
        if h * w != length:
            raise ValueError(f"{length} final tokens do not form the {h}x{w} grid of img_size={self.img_size}")
        return h, w

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens [B, L_out, C] or timm's map [B, C, H, W] -> [B, num_classes] (the pooled [B, C] when
        ``pre_logits``). ``global_pool=""``: no pooling, the head is applied per position."""
        # [B, C, H, W] -> [B, L, C]: a view of the tokens that forward_features came from
        tokens = features.flatten(2).transpose(1, 2) if features.ndim == 4 else features
        if not self.global_pool:
            if pre_logits:
                return features
            out = self.head(tokens)  # [B, L, classes]
            return out.transpose(1, 2).unflatten(2, features.shape[2:]) if features.ndim == 4 else out
        pooled = tokens.mean(dim=1)  # [B, C]; the official AdaptiveAvgPool1d over tokens
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def head_hidden_size(self) -> int:
        """Channels of ``forward_head(..., pre_logits=True)`` (timm)."""
        return self.num_features

    def get_classifier(self) -> nn.Module:
        return self.head

    def layer_id(self, name: str) -> int:
        """Layer index of a parameter for layer-wise lr decay, in ``[0, num_layers]``."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Parameters the *official* fine-tuning code does not weight-decay (beyond 1-D ones and biases)."""
        return set()

    def no_weight_decay_keywords(self) -> set[str]:
        """Name endings that a clean recipe would not decay either, though the official code does (MixMIM's
        relative-position tables). Honoured only with ``official_quirks=False``."""
        return set()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing per block: the blocks' activations are recomputed in backward instead of
        kept (exact; less memory for the large models, about one more forward of compute)."""
        raise NotImplementedError

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new ``Linear(num_features, num_classes)`` head, initialised as the official fine-tuning does
        (trunc-normal std 2e-5, zero bias), on the model's device and dtype; 0 removes the head.
        ``global_pool``: ``"avg"`` or ``""`` (None keeps the current one)."""
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, self.global_pools)
        self.num_classes = num_classes
        if num_classes <= 0:
            self.head = nn.Identity()
            return
        ref = self.patch_embed.proj.weight  # device and dtype of the model
        self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)
        self.head.train(self.training)


GLOBAL_POOLS = ("avg", "")


def check_global_pool(global_pool: str, allowed: tuple[str, ...] = GLOBAL_POOLS) -> str:
    """``global_pool`` if the backbone supports it (``"avg"``: mean of the final tokens; ``""``: no pooling;
    the plain ViT also ``"token"``: its cls token), else a ValueError naming the allowed values."""
    if global_pool not in allowed:
        raise ValueError(f"global_pool={global_pool!r} is not supported by this backbone; use one of "
                         f"{', '.join(repr(a) for a in allowed)}")
    return global_pool
