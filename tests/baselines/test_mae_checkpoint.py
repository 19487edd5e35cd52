"""MAE on the plain ViT is the official model: its checkpoint layout, fine-tuning from it, its forward pass.

The official key/shape layout is written out here from facebookresearch/mae ``models_mae.py``
(``MaskedAutoencoderViT``: timm ``Block``s, ``decoder_*`` keys, fixed sin-cos tables with a cls slot).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from baseline_helpers import fixed_images

from baselines.mae import MAE
from mixmim.backbones import create_backbone
from mixmim.weights.checkpoint import load_official_checkpoint, method_to_official_keys


def _block_shapes(prefix: str, dim: int, mlp_ratio: float = 4.0) -> dict[str, tuple[int, ...]]:
    hidden = int(dim * mlp_ratio)
    return {
        f"{prefix}.norm1.weight": (dim,), f"{prefix}.norm1.bias": (dim,),
        f"{prefix}.attn.qkv.weight": (3 * dim, dim), f"{prefix}.attn.qkv.bias": (3 * dim,),
        f"{prefix}.attn.proj.weight": (dim, dim), f"{prefix}.attn.proj.bias": (dim,),
        f"{prefix}.norm2.weight": (dim,), f"{prefix}.norm2.bias": (dim,),
        f"{prefix}.mlp.fc1.weight": (hidden, dim), f"{prefix}.mlp.fc1.bias": (hidden,),
        f"{prefix}.mlp.fc2.weight": (dim, hidden), f"{prefix}.mlp.fc2.bias": (dim,),
    }


def official_mae_shapes(img: int = 224, patch: int = 16, dim: int = 768, depth: int = 12, dec_dim: int = 512,
                        dec_depth: int = 8) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an official MAE pre-training checkpoint's ``model`` (default: mae_vit_base_patch16)."""
    length = (img // patch) ** 2
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, length + 1, dim),
              "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        shapes.update(_block_shapes(f"blocks.{i}", dim))
    shapes.update({"norm.weight": (dim,), "norm.bias": (dim,), "mask_token": (1, 1, dec_dim),
                   "decoder_embed.weight": (dec_dim, dim), "decoder_embed.bias": (dec_dim,),
                   "decoder_pos_embed": (1, length + 1, dec_dim)})
    for i in range(dec_depth):
        shapes.update(_block_shapes(f"decoder_blocks.{i}", dec_dim))
    shapes.update({"decoder_norm.weight": (dec_dim,), "decoder_norm.bias": (dec_dim,),
                   "decoder_pred.weight": (patch * patch * 3, dec_dim), "decoder_pred.bias": (patch * patch * 3,)})
    return shapes


SMALL = dict(img=32, patch=4, dim=64, depth=4, dec_dim=32, dec_depth=1)  # mixmim_vit_tiny_patch4_32 + a small decoder


def _small_mae() -> MAE:
    torch.manual_seed(0)
    return MAE(create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0), decoder_dim=32, decoder_depth=1,
               decoder_heads=2)


def test_mae_base_has_the_official_layout_and_loads_strict():
    with torch.device("meta"):  # ViT-B sizes without allocating 112M parameters
        method = MAE(create_backbone("mixmim_vit_base_patch16", num_classes=0))
        official = {k: torch.empty(s) for k, s in official_mae_shapes().items()}
    ours = {k: tuple(v.shape) for k, v in method_to_official_keys(method.state_dict()).items()}
    assert ours == official_mae_shapes()
    load_official_checkpoint(method, {"model": official})  # strict=True for a pre-training method


def test_official_values_load_into_every_tensor():
    method = _small_mae()
    gen = torch.Generator().manual_seed(3)
    official = {k: torch.randn(s, generator=gen) for k, s in official_mae_shapes(**SMALL).items()}
    load_official_checkpoint(method, {"model": official})
    back = method_to_official_keys(method.state_dict())
    assert set(back) == set(official)
    for key, value in official.items():
        torch.testing.assert_close(back[key], value, rtol=0, atol=0, msg=key)


def test_finetuning_from_official_mae_misses_only_the_head():
    with torch.device("meta"):
        backbone = create_backbone("mixmim_vit_base_patch16")  # 1000 classes
        official = {k: torch.empty(s) for k, s in official_mae_shapes().items()}
    result = load_official_checkpoint(backbone, {"model": official})
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]
    assert result.unexpected_keys == []


def official_forward(method: MAE, images: torch.Tensor, noise: torch.Tensor, ratio: float = 0.75):
    """facebookresearch/mae ``MaskedAutoencoderViT.forward`` step by step on ``method``'s weights (reference)."""
    enc, dec = method.encoder, method.decoder
    x = enc.patch_embed(images) + enc.pos_embed[:, 1:]
    n, length, d = x.shape
    len_keep = int(length * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :len_keep, None].expand(-1, -1, d))
    mask = torch.ones(n, length)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    x = torch.cat([(enc.cls_token + enc.pos_embed[:, :1]).expand(n, -1, -1), x], dim=1)
    for block in enc.blocks:
        x = block(x)
    x = dec.decoder_embed(enc.norm(x))
    tokens = dec.mask_token.repeat(n, length + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:], tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
    x = torch.cat([x[:, :1], x_], dim=1) + dec.decoder_pos_embed
    for block in dec.decoder_blocks:
        x = block(x)
    pred = dec.decoder_pred(dec.decoder_norm(x))[:, 1:]
    target = F.unfold(images, 4, stride=4)  # [N, 3*p*p, L] in (c, p, q) order -> reorder to (p, q, c)
    target = target.reshape(n, 3, 16, length).permute(0, 3, 2, 1).reshape(n, length, 48)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum(), pred, mask


def test_mae_vit_equals_the_official_forward():
    method = _small_mae().eval()
    images = fixed_images(4)
    noise = torch.rand(4, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        loss_ref, pred_ref, mask_ref = official_forward(method, images, noise)
        out = method(images, mask_ref)  # the official [N, L] mask (1 = remove)
    torch.testing.assert_close(out["mask"], mask_ref)
    torch.testing.assert_close(out["pred"], pred_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss"], loss_ref, rtol=1e-5, atol=1e-6)


def test_mae_init_is_official():
    method = _small_mae()
    assert method.decoder.decoder_norm.eps == 1e-6 and method.decoder.decoder_blocks[0].norm1.eps == 1e-6
    assert method.decoder.decoder_pos_embed.requires_grad is False
    torch.testing.assert_close(method.decoder.decoder_pos_embed[0, 0], torch.zeros(32))  # the cls slot
    token = method.decoder.mask_token.flatten()
    assert 0.005 < token.std().item() < 0.05  # normal(std=.02)
