"""BEiT (Bao et al., arXiv 2106.08254; microsoft/unilm ``beit/modeling_pretrain.py``) on the shared backbones.

Steps: :meth:`BEiT.draw_mask` (blockwise masking, about 40% of the cells, per sample) ->
:meth:`BEiT.forward_encoder` (a learned [MASK] token replaces the masked patch embeddings before the
position embedding) -> the linear ``lm_head`` on the masked positions -> :meth:`BEiT.forward_loss`
(cross-entropy against the tokenizer's visual tokens of the masked positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from baselines.masks import batch_mask, beit_block_masks, mask_unit_grid, random_count_masks
from baselines.tokenizers.interface import Tokenizer
from mixmim.backbones.interface import Backbone
from mixmim.device_copy import to_device
from mixmim.pretrain.masking import upsample_mask
from mixmim.pretrain.method import MASK_STRATEGIES, PretrainMethod


def _beit_trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> None:
    """BEiT's init: a normal truncated at +-1 std (``modeling_pretrain.trunc_normal_``)."""
    trunc_normal_(tensor, std=std, a=-std, b=std)


class BEiT(PretrainMethod):
    """Masked image modeling with discrete visual tokens, identical on both backbones.

    The visual tokens live on the encoder's final token grid: the ViT's patches (14x14 at 224 px, as
    BEiT) or, on the hierarchical backbone, its final-stage cells, i.e. the mask-unit granularity (7x7 of
    32 px at 224). The tokenizer is frozen and *not* a submodule: it is not in the state dict nor in the
    optimiser, as the official d-VAE lives outside the model; :meth:`targets` moves it to the images'
    device.

    Args:
        encoder: a backbone with ``num_classes=0``.
        tokenizer: images -> visual tokens (``baselines.tokenizers``); its ``vocab_size`` sizes the head.
        mask_ratio: fraction of mask units masked per sample, ``round(L * ratio)``; the default 75/196 gives
            BEiT's ``--num_mask_patches 75`` at 14x14 (the paper's "about 40%").
        mask_unit: px per mask unit; 0 = the encoder's final stride (the ViT's patch). Blocks cover whole
            mask units; the smallest block scales with the grid (16 of 196 cells in BEiT).
        mask_strategy: ``block`` (BEiT) or ``random`` (the same count of cells, uniformly: an ablation).
    """

    lr_scale_base = 256  # BEiT's lr 1.5e-3 at batch 2048 is expressed as blr 1.875e-4 at 256 (registry.py)

    def __init__(self, encoder: Backbone, tokenizer: Tokenizer, mask_ratio: float = 75 / 196, mask_unit: int = 0,
                 mask_strategy: str = "block"):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {MASK_STRATEGIES}, got {mask_strategy!r}")
        self.mask_strategy = mask_strategy
        self.encoder = encoder
        object.__setattr__(self, "tokenizer", tokenizer)  # frozen, kept out of the module tree (see above)
        self.mask_ratio = mask_ratio
        self.mask_unit = mask_unit or encoder.strides[-1]
        self.mask_grid = mask_unit_grid(encoder, self.mask_unit, multiple_of=encoder.strides[-1])
        self.num_masked = max(1, round(self.mask_grid[0] * self.mask_grid[1] * mask_ratio))
        self.token_grid = encoder.out_grid_size  # the visual-token grid
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.stage_dims[0]))
        self.lm_head = nn.Linear(encoder.num_features, tokenizer.vocab_size)
        _beit_trunc_normal_(self.mask_token)
        _beit_trunc_normal_(self.lm_head.weight)
        nn.init.zeros_(self.lm_head.bias)

    def draw_mask(self, batch: int) -> torch.Tensor:
        """Per-sample blockwise (or random) masks [B, h, w] bool (True = masked), from ``self.generator``."""
        if self.mask_strategy == "random":
            return random_count_masks(batch, self.mask_grid, self.num_masked, self.generator)
        return beit_block_masks(batch, self.mask_grid, self.num_masked, self.generator)

    def forward_encoder(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W], mask [B, h, w] -> features [B, L, C] (every position, [MASK] where masked)."""
        tokens = self.encoder.embed(images)  # [B, L0, C0], before the position embedding
        w = upsample_mask(mask, self.encoder.grid_size).flatten(1)[..., None].to(tokens.dtype)  # [B, L0, 1]
        tokens = tokens * (1 - w) + self.mask_token.to(tokens.dtype) * w
        return self.encoder.forward_tokens(tokens)

    @torch.no_grad()
    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """The visual tokens of ``images``: [B, L] int64 on the token grid."""
        tokenizer = self.tokenizer.to(images.device)
        return tokenizer(images, self.token_grid).flatten(1)

    def forward_loss(self, images: torch.Tensor, logits: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the masked positions: logits [M, V] (in ``token_mask[B, L]``'s row-major order)."""
        positions = token_mask.flatten().nonzero().squeeze(1)  # [M]
        return self._loss_at(images, logits, positions)

    def _loss_at(self, images: torch.Tensor, logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits [M, V] against the visual tokens at flat positions [M] of [B * L]."""
        labels = self.targets(images).flatten()[positions]  # [M]
        return F.cross_entropy(logits.float(), labels)

    def official_no_weight_decay(self) -> set[str]:
        """BEiT ``optim_factory.get_parameter_groups`` with ``no_weight_decay() = {pos_embed, cls_token}``: the
        [MASK] token and the shared relative-position table are decayed."""
        return {"encoder.cls_token", "encoder.pos_embed"} & {n for n, _ in self.named_parameters()}

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W] (ImageNet-normalised); mask at the mask-unit grid (see ``baselines.masks``).

        Returns:
            ``loss``; ``pred`` [M, V] the logits of the M masked positions (row-major over ``mask``, as the
            official ``lm_head(x[bool_masked_pos])``); ``mask`` [B, L] float on the token grid.
        """
        b = images.shape[0]
        mask = self.draw_mask(b) if mask is None else batch_mask(mask, b, self.mask_grid)
        # Masked positions are found on the CPU (where masks are drawn): no device synchronisation.
        token_mask = upsample_mask(mask.cpu(), self.token_grid).flatten(1)  # [B, L] bool
        positions = to_device(token_mask.flatten().nonzero().squeeze(1), images.device)  # [M]
        z = self.forward_encoder(images, to_device(mask, images.device))  # [B, L, C]
        logits = self.lm_head(z.flatten(0, 1)[positions])  # [M, V]: the head runs on the masked positions only
        loss = self._loss_at(images, logits, positions)
        return {"loss": loss, "pred": logits, "mask": to_device(token_mask, images.device).to(logits.dtype)}
