"""One-call builders from each official constructor's argument names (MixMIM's: ``mixmim_from_official_args``).

Each returns our pre-training model in the architecture of the official one, so that its released file loads
with ``mixmim.weights.checkpoint.load_official_checkpoint(model, path)`` (strict). Defaults are the released
base models' values:

- :func:`mae_from_official_args`: facebookresearch/mae ``models_mae.MaskedAutoencoderViT``
  (``mae_vit_base_patch16``).
- :func:`simmim_from_official_args`: microsoft/SimMIM ``VisionTransformerForSimMIM`` as ``build_simmim``
  calls it, with ``config.py``'s ``MODEL.VIT`` defaults (layer scale 0.1, shared relative position bias, no
  absolute position embedding). SimMIM's Swin models are a different architecture (shifted windows) and
  are refused.
- :func:`beit_from_official_args`: microsoft/unilm ``beit/modeling_pretrain.py``
  ``VisionTransformerForMaskedImageModeling`` with ``run_beit_pretraining.py``'s defaults (shared relative
  position bias, no absolute position embedding, ``--layer_scale_init_value 0.1``).

An official *learned* absolute position embedding (``use_abs_pos_emb=True``) is our fixed sin-cos one:
a released file's values load into it, but it is not trained further.
"""

from __future__ import annotations

from baselines.beit import BEiT
from baselines.mae import MAE
from baselines.simmim import SimMIM
from baselines.tokenizers.interface import Tokenizer
from mixmim.backbones.vit import PlainViT


def _beit_style_vit(img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int, num_heads: int,
                    mlp_ratio: float, qkv_bias: bool, drop_path_rate: float, init_values: float | None,
                    use_abs_pos_emb: bool, use_rel_pos_bias: bool, use_shared_rel_pos_bias: bool,
                    use_mean_pooling: bool = False) -> PlainViT:
    """The headless ViT of BEiT's (and SimMIM's) ``VisionTransformer`` arguments."""
    if not qkv_bias:
        raise ValueError("qkv_bias=False is not supported: every released model has q/v biases (qkv_bias=True)")
    if use_rel_pos_bias and use_shared_rel_pos_bias:
        raise ValueError("use_rel_pos_bias and use_shared_rel_pos_bias are both set; the released models use "
                         "one: shared in pre-training, per block in fine-tuning")
    rel_pos_bias = "layer" if use_rel_pos_bias else "shared" if use_shared_rel_pos_bias else "none"
    return PlainViT(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, embed_dim=embed_dim,
                    depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate,
                    init_values=init_values or None, use_abs_pos_emb=use_abs_pos_emb, rel_pos_bias=rel_pos_bias,
                    fc_norm=use_mean_pooling)


def mae_from_official_args(img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                           depth: int = 12, num_heads: int = 12, decoder_embed_dim: int = 512,
                           decoder_depth: int = 8, decoder_num_heads: int = 16, mlp_ratio: float = 4.0,
                           norm_pix_loss: bool = False, mask_ratio: float = 0.75) -> MAE:
    """``MaskedAutoencoderViT(...)``'s arguments (``mask_ratio`` is its ``forward`` argument); ViT-B sizes and
    the class's ``norm_pix_loss=False`` by default (the released models were trained with ``--norm_pix_loss``).
    """
    encoder = PlainViT(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0,
                       embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    return MAE(encoder, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, decoder_dim=decoder_embed_dim,
               decoder_depth=decoder_depth, decoder_heads=decoder_num_heads)


def simmim_from_official_args(img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                              depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                              drop_path_rate: float = 0.0, init_values: float | None = 0.1,
                              use_abs_pos_emb: bool = False, use_rel_pos_bias: bool = False,
                              use_shared_rel_pos_bias: bool = True, use_mean_pooling: bool = False,
                              mask_ratio: float = 0.6, mask_patch_size: int = 32,
                              model_type: str = "vit") -> SimMIM:
    """``VisionTransformerForSimMIM(...)``'s arguments, plus ``DATA.MASK_RATIO``/``DATA.MASK_PATCH_SIZE`` and
    ``MODEL.TYPE``. ``use_mean_pooling=True`` drops the final norm, as the official encoder does.

    Raises:
        ValueError: ``model_type="swin"`` (shifted windows: no suite model matches it).
    """
    if model_type != "vit":
        raise ValueError(f"model_type={model_type!r}: SimMIM's Swin is a shifted-window architecture that the "
                         "suite's hierarchical backbone (MixMIM's, no shifted windows) does not reproduce; only "
                         "model_type='vit' has a matching model")
    encoder = _beit_style_vit(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
                              drop_path_rate, init_values, use_abs_pos_emb, use_rel_pos_bias,
                              use_shared_rel_pos_bias, use_mean_pooling)
    return SimMIM(encoder, mask_ratio=mask_ratio, mask_unit=mask_patch_size)


def beit_from_official_args(tokenizer: Tokenizer, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                            vocab_size: int = 8192, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                            mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                            init_values: float | None = 0.1, use_abs_pos_emb: bool = False,
                            use_rel_pos_bias: bool = False, use_shared_rel_pos_bias: bool = True,
                            num_mask_patches: int = 75) -> BEiT:
    """``VisionTransformerForMaskedImageModeling(...)``'s arguments plus ``--num_mask_patches``; ``tokenizer``
    gives the visual tokens (``baselines.tokenizers``: the DALL-E dVAE for the released models) and must
    have ``vocab_size`` tokens. ``init_values=0`` disables layer scale (``--layer_scale_init_value 0``)."""
    if tokenizer.vocab_size != vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but vocab_size={vocab_size}; the "
                         "lm_head must match the tokenizer")
    encoder = _beit_style_vit(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
                              drop_path_rate, init_values, use_abs_pos_emb, use_rel_pos_bias,
                              use_shared_rel_pos_bias)
    grid = (img_size // patch_size) ** 2
    return BEiT(encoder, tokenizer, mask_ratio=num_mask_patches / grid)
