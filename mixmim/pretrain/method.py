"""MixMIM pre-training (arXiv 2205.13137; official Sense-X/MixMIM ``models_mixmim.py``), on any backbone.

Steps, each a method below: draw the mix mask ``M`` (one per step, shared by the batch) ->
:meth:`MixMIM.mix_tokens` (``x * (1 - M) + x.flip(0) * M`` right after the patch embedding) -> the encoder
with masked self-attention (token groups = which image a token came from) -> :meth:`MixMIM.forward_decoder`
(unmix into two sequences with mask tokens) -> :meth:`MixMIM.forward_loss` (dual reconstruction: every
patch of every image is predicted once, from the mix in which it was hidden).
"""

from __future__ import annotations

import torch
from torch import nn

from mixmim.backbones.interface import Backbone
from mixmim.config import CHOICES
from mixmim.device_copy import to_device
from mixmim.pretrain.decoder import PixelDecoder
from mixmim.pretrain.masking import block_mask, gaussian_like, mix_mask, normalize_mask_arg, upsample_mask
from mixmim.pretrain.targets import pixel_targets

MASK_TYPES = CHOICES["method.mask_type"]  # declared once, on the config
MASK_STRATEGIES = CHOICES["method.mask_strategy"]


class PretrainMethod(nn.Module):
    """Base of every pre-training method: ``forward(images, mask=None) -> dict(loss=...)``.

    Attributes:
        encoder: the backbone (trained, and exported for the evaluations).
        generator: the method's own RNG for masks; the engine reseeds it per rank and checkpoints it.
        lr_scale_base: lr = blr * effective_batch / lr_scale_base (256; SimMIM: 512).
    """

    encoder: Backbone
    lr_scale_base: int = 256

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator()
        self.generator.manual_seed(0)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def official_no_weight_decay(self) -> set[str]:
        """Full names the method's *official* pre-training exempts from weight decay beyond 1-D parameters and
        biases (used under ``official_quirks``). MixMIM, MAE (timm ``add_weight_decay`` without a skip
        list): none."""
        return set()

    def no_weight_decay(self) -> set[str]:
        """Tokens and embeddings of the method itself (the engine adds each submodule's own list); decayed
        anyway under ``official_quirks``, as the official code decays ``mask_token``."""
        return {n for n, _ in self.named_parameters()
                if n.rsplit(".", 1)[-1] in ("mask_token", "input_mask_token") or n.startswith("mix_embeds.")}


class MixMIM(PretrainMethod):
    """MixMIM with the paper's ablation switches.

    Args:
        encoder: a backbone with ``num_classes=0``.
        mask_ratio: fraction of mask units filled from the partner image (``int(L * ratio)`` of them).
        mask_unit: mask-unit size in px; 0 = the encoder's final stride (32 px: the official 7x7 grid).
        norm_pix_loss: per-patch normalised targets (official: True).
        dual_reconstruction: False reconstructs only the hidden part of the first image of each mix.
        mix_embedding: a learned vector per group added at every stage start, *instead of* masked
            self-attention (the paper's alternative; the official code uses masked attention).
        mask_type: what fills the masked cells: ``mix`` (the partner image), ``mask_token`` (a learned
            token), ``zero``, ``noise`` (Gaussian); the non-mix types are single-image reconstructions.
        mask_strategy: ``random`` (official) or ``block`` (BEiT-style blocks with the same cell count).
    """

    def __init__(self, encoder: Backbone, mask_ratio: float = 0.5, mask_unit: int = 0, norm_pix_loss: bool = True,
                 decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16,
                 dual_reconstruction: bool = True, mix_embedding: bool = False, mask_type: str = "mix",
                 mask_strategy: str = "random"):
        super().__init__()
        if mask_type not in MASK_TYPES or mask_strategy not in MASK_STRATEGIES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES} and mask_strategy one of {MASK_STRATEGIES}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.dual_reconstruction, self.mix_embedding = dual_reconstruction, mix_embedding
        self.mask_type, self.mask_strategy = mask_type, mask_strategy
        self.mask_unit = mask_unit or encoder.strides[-1]
        if self.mask_unit % encoder.strides[-1] or encoder.img_size % self.mask_unit:
            raise ValueError(f"mask_unit {self.mask_unit} px must be a multiple of the encoder's final stride "
                             f"({encoder.strides[-1]} px) and divide img_size ({encoder.img_size} px)")
        self.mask_grid = (encoder.img_size // self.mask_unit,) * 2
        self.token_grid = encoder.out_grid_size  # final-stage tokens: what the decoder sees
        self.target_patch = encoder.strides[-1]
        self.decoder = PixelDecoder(encoder.num_features, self.token_grid, self.target_patch**2 * 3,
                                    decoder_dim, decoder_depth, decoder_heads)
        if mix_embedding:  # one [2, C_stage] table per stage, trunc-normal std .02 like other embeddings
            self.mix_embeds = nn.ParameterList(
                nn.Parameter(nn.init.trunc_normal_(torch.zeros(2, d), std=0.02)) for d in encoder.stage_dims)
        if mask_type == "mask_token":
            self.input_mask_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, encoder.stage_dims[0]),
                                                                       std=0.02))

    def draw_mask(self) -> torch.Tensor:
        """The step's mask M [h, w] at the mask-unit grid (1 = taken from the partner image)."""
        if self.mask_strategy == "block":
            count = int(self.mask_grid[0] * self.mask_grid[1] * self.mask_ratio)
            return block_mask(self.mask_grid, count, self.generator, exact=True).float()
        return mix_mask(self.mask_grid, self.mask_ratio, self.generator)

    def mix_tokens(self, tokens: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Fill the masked tokens [B, L, C] where ``m`` [1, L, 1] is 1 (with the flipped batch for ``mix``)."""
        if self.mask_type == "mix":
            filler = tokens.flip(0)
        elif self.mask_type == "mask_token":
            filler = self.input_mask_token.to(tokens.dtype).expand_as(tokens)
        elif self.mask_type == "noise":
            filler = gaussian_like(tokens, self.generator)
        else:
            filler = torch.zeros_like(tokens)
        return tokens * (1 - m) + filler * m

    def forward_encoder(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W], M [h, w] (on the host, where it is drawn, or on the device) -> features [B, L_out, C] of
        the mixed batch."""
        tokens = self.encoder.embed(images)  # [B, L0, C0], before the position embedding
        m0 = to_device(upsample_mask(mask, self.encoder.grid_size).reshape(1, -1, 1), tokens.device).to(tokens.dtype)
        tokens = self.mix_tokens(tokens, m0)
        if self.mask_type != "mix":  # one image per sample: nothing to keep apart
            return self.encoder.forward_tokens(tokens)
        groups = mask.long()[None]  # [1, h, w]: 0 = own image, 1 = partner (the backbone plans on the host)
        embeds = list(self.mix_embeds) if self.mix_embedding else None
        return self.encoder.forward_tokens(tokens, groups, embeds, mask_attention=not self.mix_embedding)

    def forward_decoder(self, z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Unmix: z [B, L, C], m [1, L, 1] -> [2B, L, P] (or [B, L, P] without dual reconstruction).

        ``x1`` keeps the tokens of each sample's own image (mask tokens where it was hidden), ``x2`` the
        partner's tokens (mask tokens elsewhere).
        """
        x = self.decoder.embed(z)  # [B, L, D]
        token = self.decoder.mask_token.to(x.dtype)
        if self.mask_type != "mix":
            return self.decoder.predict(x)
        x1 = x * (1 - m) + token * m
        if not self.dual_reconstruction:
            return self.decoder.predict(x1)
        x2 = x * m + token * (1 - m)
        return self.decoder.predict(torch.cat([x1, x2], dim=0))

    def forward_loss(self, images: torch.Tensor, rec: torch.Tensor, m: torch.Tensor):
        """MSE against (normalised) 32-px patches. Dual: ``pred = rec1 * M + rec2.flip(0) * (1 - M)`` and the
        mean over all B x L x P values; otherwise the mean over the hidden cells of the first image."""
        target = pixel_targets(images, self.target_patch, self.norm_pix_loss)  # [B, L, P]
        b = images.shape[0]
        if self.mask_type == "mix" and self.dual_reconstruction:
            pred = rec[:b] * m + rec[b:].flip(0) * (1 - m)
            return ((pred - target) ** 2).mean(), pred
        per_token = ((rec - target) ** 2).mean(dim=-1)  # [B, L]
        weight = m[..., 0].expand_as(per_token)
        return (per_token * weight).sum() / weight.sum().clamp(min=1), rec

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W] (ImageNet-normalised); mask [L], [1, L, 1] or [h, w] at the mask-unit grid.

        Returns:
            ``loss`` (scalar), ``pred`` [B, L_out, P] (each image's reconstruction, unmixed),
            ``mask`` [1, L_out] (1 where image i's token was hidden, at the decoder's token grid).
        """
        mask = self.draw_mask() if mask is None else normalize_mask_arg(mask, self.mask_grid).cpu()
        # M stays on the host (mixmim.device_copy): the attention plan is made there, the device gets copies.
        z = self.forward_encoder(images, mask)
        m = to_device(upsample_mask(mask, self.token_grid).reshape(1, -1, 1), z.device).to(z.dtype)
        rec = self.forward_decoder(z, m)
        loss, pred = self.forward_loss(images, rec, m)
        return {"loss": loss, "pred": pred, "mask": m[..., 0]}


def mixmim_from_official_args(img_size: int = 224, patch_size: int = 4, embed_dim: int = 128,
                              depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=(14, 14, 14, 7),
                              decoder_dim: int = 512, decoder_depth: int = 8, decoder_num_heads: int = 16,
                              norm_pix_loss: bool = True, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                              drop_path_rate: float = 0.0, mask_ratio: float = 0.5, **encoder_kwargs) -> MixMIM:
    """The pre-training model from the official ``MixMIM(...)`` constructor's argument names (MixMIM-B
    values by default). Load an official file with
    ``mixmim.weights.checkpoint.load_official_checkpoint(model, path)``; ``timm.create_model("mixmim_base", **the
    encoder args)`` builds the matching fine-tune model."""
    from mixmim.backbones.hierarchical import MixMIMTransformer

    encoder = MixMIMTransformer(img_size=img_size, patch_size=patch_size, num_classes=0, embed_dim=embed_dim,
                                depths=depths, num_heads=num_heads, window_size=window_size,
                                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path_rate=drop_path_rate,
                                **encoder_kwargs)
    return MixMIM(encoder, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, decoder_dim=decoder_dim,
                  decoder_depth=decoder_depth, decoder_heads=decoder_num_heads)
