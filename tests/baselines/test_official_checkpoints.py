"""Official SimMIM (ViT) and BEiT pre-training checkpoints load through ``load_official_checkpoint``.

The key layouts are written out here from microsoft/SimMIM ``models/simmim.py`` + ``models/vision_transformer.py``
(``SimMIM(encoder=VisionTransformerForSimMIM)``: ``encoder.*``, ``decoder.0.*``) and microsoft/unilm
``beit/modeling_pretrain.py`` (``VisionTransformerForMaskedImageModeling``: flat keys, ``lm_head``). Their
blocks are BEiT's: ``attn.q_bias``/``attn.v_bias`` (no k bias), ``gamma_1``/``gamma_2`` (layer scale), a
shared ``rel_pos_bias`` with three cls entries. :func:`official_encoder_forward` is the official encoder's
forward written out on the official tensors (reference for the loss equality).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from baseline_helpers import fixed_images
from test_mae_checkpoint import SMALL as MAE_SMALL
from test_mae_checkpoint import official_mae_shapes

from baselines import beit_from_official_args, mae_from_official_args, simmim_from_official_args
from baselines.tokenizers import KMeansTokenizer
from mixmim.backbones.vit import PlainViT
from mixmim.weights.checkpoint import load_official_checkpoint, method_to_official_keys

SMALL = dict(img=32, patch=4, dim=64, depth=2, heads=2)  # an 8x8 grid
VOCAB = 16


def official_index(g: int) -> torch.Tensor:
    """``RelativePositionBias.relative_position_index`` of the official code for a g x g grid."""
    coords = torch.stack(torch.meshgrid([torch.arange(g), torch.arange(g)], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += g - 1
    rel[:, :, 1] += g - 1
    rel[:, :, 0] *= 2 * g - 1
    num = (2 * g - 1) ** 2 + 3
    index = torch.zeros((g * g + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = num - 3
    index[0:, 0] = num - 2
    index[0, 0] = num - 1
    return index


def official_vit_shapes(prefix: str, img=224, patch=16, dim=768, depth=12, heads=12) -> dict[str, tuple]:
    """BEiT-style ViT keys (SimMIM's ViT and BEiT's pre-training encoder; ViT-B defaults)."""
    g = img // patch
    shapes = {"cls_token": (1, 1, dim), "mask_token": (1, 1, dim),
              "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
              "rel_pos_bias.relative_position_bias_table": ((2 * g - 1) ** 2 + 3, heads),
              "rel_pos_bias.relative_position_index": (g * g + 1, g * g + 1)}
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({b + "gamma_1": (dim,), b + "gamma_2": (dim,),
                       b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
                       b + "attn.q_bias": (dim,), b + "attn.v_bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim),
                       b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,), b + "norm2.weight": (dim,),
                       b + "norm2.bias": (dim,), b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                       b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,)})
    shapes.update({"norm.weight": (dim,), "norm.bias": (dim,)})
    return {prefix + k: v for k, v in shapes.items()}


def official_simmim_shapes(img=224, patch=16, dim=768, depth=12, heads=12) -> dict[str, tuple]:
    """``SimMIM(VisionTransformerForSimMIM)`` (simmim_pretrain__vit_base__img224__800ep)."""
    return {**official_vit_shapes("encoder.", img, patch, dim, depth, heads),
            "decoder.0.weight": (patch * patch * 3, dim, 1, 1), "decoder.0.bias": (patch * patch * 3,)}


def official_beit_shapes(img=224, patch=16, dim=768, depth=12, heads=12, vocab=8192) -> dict[str, tuple]:
    """``beit_base_patch16_224_8k_vocab`` with ``--shared_rel_pos_bias --layer_scale_init_value 0.1``."""
    return {**official_vit_shapes("", img, patch, dim, depth, heads), "lm_head.weight": (vocab, dim),
            "lm_head.bias": (vocab,)}


def random_official(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=gen) * 0.2 for k, s in shapes.items()}
    for k in sd:
        if k.endswith("relative_position_index"):
            sd[k] = official_index(int(round((sd[k].shape[0] - 1) ** 0.5)))
        elif k.endswith(("gamma_1", "gamma_2")):
            sd[k] = sd[k].abs() + 0.1
    return sd


def _small_simmim():
    torch.manual_seed(0)
    return simmim_from_official_args(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, mask_patch_size=8)


def _tokenizer() -> KMeansTokenizer:
    return KMeansTokenizer(torch.randn(VOCAB, 48, generator=torch.Generator().manual_seed(1)))


def _small_beit():
    torch.manual_seed(0)
    return beit_from_official_args(_tokenizer(), img_size=32, patch_size=4, vocab_size=VOCAB, embed_dim=64, depth=2,
                                   num_heads=2, num_mask_patches=24)


def test_base_models_load_the_official_layouts_strict():
    with torch.device("meta"):
        simmim = simmim_from_official_args()
        beit = beit_from_official_args(KMeansTokenizer(torch.zeros(8192, 48)))
        mae = mae_from_official_args()
    load_official_checkpoint(simmim, {"model": {k: torch.empty(s, device="meta")
                                                for k, s in official_simmim_shapes().items()}})
    load_official_checkpoint(beit, {"model": {k: torch.empty(s, device="meta")
                                              for k, s in official_beit_shapes().items()}})
    ours = {k: tuple(v.shape) for k, v in method_to_official_keys(mae.state_dict()).items()}
    assert ours == official_mae_shapes()  # MAE's builder: the official layout key for key
    assert (simmim.mask_ratio, simmim.mask_unit, beit.num_masked) == (0.6, 32, 75)


def _check_vit_values(encoder: PlainViT, sd: dict[str, torch.Tensor], prefix: str) -> None:
    for i, block in enumerate(encoder.blocks):
        b = f"{prefix}blocks.{i}."
        q, v = sd[b + "attn.q_bias"], sd[b + "attn.v_bias"]
        assert torch.equal(block.attn.qkv.bias, torch.cat([q, torch.zeros_like(q), v]))  # k part zero
        assert torch.equal(block.ls1.gamma, sd[b + "gamma_1"]) and torch.equal(block.ls2.gamma, sd[b + "gamma_2"])
        assert torch.equal(block.mlp.fc2.weight, sd[b + "mlp.fc2.weight"])
    table = sd[prefix + "rel_pos_bias.relative_position_bias_table"]
    assert torch.equal(encoder.rel_pos_bias.relative_position_bias_table, table)
    assert torch.equal(encoder.cls_token, sd[prefix + "cls_token"]) and encoder.pos_embed is None


def test_simmim_values_land_in_place():
    method = _small_simmim()
    sd = random_official(official_simmim_shapes(**SMALL))
    load_official_checkpoint(method, {"model": sd})
    assert torch.equal(method.mask_token, sd["encoder.mask_token"])
    assert torch.equal(method.decoder[0].weight, sd["decoder.0.weight"])
    _check_vit_values(method.encoder, sd, "encoder.")


def test_beit_values_land_in_place():
    method = _small_beit()
    sd = random_official(official_beit_shapes(**SMALL, vocab=VOCAB))
    load_official_checkpoint(method, {"model": sd})
    assert torch.equal(method.mask_token, sd["mask_token"]) and torch.equal(method.lm_head.weight, sd["lm_head.weight"])
    _check_vit_values(method.encoder, sd, "")


def _ln(x, sd, key):
    return F.layer_norm(x, x.shape[-1:], sd[key + ".weight"], sd[key + ".bias"], eps=1e-6)


def official_encoder_forward(sd, prefix, images, token_mask, heads):
    """The official BEiT/SimMIM ViT encoder on its own tensors: [MASK] substitution, cls token, no absolute
    position embedding, blocks with ``cat(q_bias, 0, v_bias)``, the shared bias, ``gamma_1/2``; final norm."""
    p = sd[prefix + "patch_embed.proj.weight"]
    x = F.conv2d(images, p, sd[prefix + "patch_embed.proj.bias"], stride=p.shape[-1]).flatten(2).transpose(1, 2)
    b, length, d = x.shape
    w = token_mask.flatten(1)[..., None].float()
    x = x * (1 - w) + sd[prefix + "mask_token"] * w
    x = torch.cat([sd[prefix + "cls_token"].expand(b, -1, -1), x], dim=1)
    n = length + 1
    table = sd[prefix + "rel_pos_bias.relative_position_bias_table"]
    index = sd[prefix + "rel_pos_bias.relative_position_index"]
    bias = table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)
    i = 0
    while f"{prefix}blocks.{i}.norm1.weight" in sd:
        k = f"{prefix}blocks.{i}."
        h = _ln(x, sd, k + "norm1")
        qkv_bias = torch.cat([sd[k + "attn.q_bias"], torch.zeros_like(sd[k + "attn.v_bias"]), sd[k + "attn.v_bias"]])
        qkv = F.linear(h, sd[k + "attn.qkv.weight"], qkv_bias).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, kk, v = qkv[0] * (d // heads) ** -0.5, qkv[1], qkv[2]
        attn = ((q @ kk.transpose(-2, -1)) + bias).softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        out = F.linear(out, sd[k + "attn.proj.weight"], sd[k + "attn.proj.bias"])
        x = x + sd[k + "gamma_1"] * out
        h = F.gelu(F.linear(_ln(x, sd, k + "norm2"), sd[k + "mlp.fc1.weight"], sd[k + "mlp.fc1.bias"]))
        x = x + sd[k + "gamma_2"] * F.linear(h, sd[k + "mlp.fc2.weight"], sd[k + "mlp.fc2.bias"])
        i += 1
    return _ln(x, sd, prefix + "norm")[:, 1:]  # [B, L, D]


def test_simmim_loss_equals_the_official_forward():
    method = _small_simmim().eval()
    sd = random_official(official_simmim_shapes(**SMALL), seed=2)
    load_official_checkpoint(method, {"model": sd})
    images = fixed_images(4)
    mask = torch.rand(4, 4, 4, generator=torch.Generator().manual_seed(3)) < 0.6  # 8-px mask units
    patch_mask = mask.repeat_interleave(2, 1).repeat_interleave(2, 2)  # the official mask at the patch grid
    with torch.no_grad():
        z = official_encoder_forward(sd, "encoder.", images, patch_mask, heads=2)
        z = z.transpose(1, 2).reshape(4, 64, 8, 8)
        rec = F.pixel_shuffle(F.conv2d(z, sd["decoder.0.weight"], sd["decoder.0.bias"]), 4)
        pixel = patch_mask.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].float()
        ref = (F.l1_loss(images, rec, reduction="none") * pixel).sum() / (pixel.sum() + 1e-5) / 3
        ours = method(images, mask)
    torch.testing.assert_close(ours["pred"], rec, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours["loss"], ref, rtol=1e-5, atol=1e-6)


def test_beit_loss_equals_the_official_forward():
    method = _small_beit().eval()
    sd = random_official(official_beit_shapes(**SMALL, vocab=VOCAB), seed=4)
    load_official_checkpoint(method, {"model": sd})
    images = fixed_images(4)
    mask = method.draw_mask(4)  # [4, 8, 8] blockwise, at the patch grid
    with torch.no_grad():
        z = official_encoder_forward(sd, "", images, mask, heads=2)
        bool_masked_pos = mask.flatten(1)  # [B, L], as the official masking generator's output
        logits = F.linear(z[bool_masked_pos], sd["lm_head.weight"], sd["lm_head.bias"])
        labels = _tokenizer()(images, (8, 8)).flatten(1)[bool_masked_pos]
        ours = method(images, mask)
    torch.testing.assert_close(ours["pred"], logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours["loss"], F.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)


def _finetune_vit(**switches) -> PlainViT:
    return PlainViT(img_size=32, patch_size=4, num_classes=10, embed_dim=64, depth=2, num_heads=2, init_values=0.1,
                    use_abs_pos_emb=False, **switches)


def test_encoders_load_into_finetuning_models_only_head_missing():
    simmim = random_official(official_simmim_shapes(**SMALL))
    beit = random_official(official_beit_shapes(**SMALL, vocab=VOCAB))
    for sd, prefix in ((simmim, "encoder."), (beit, "")):
        same = _finetune_vit(rel_pos_bias="shared")  # the pre-training architecture with a head
        result = load_official_checkpoint(same, {"model": sd})
        assert sorted(result.missing_keys) == ["head.bias", "head.weight"] and result.unexpected_keys == []
        # The published fine-tuning: one bias per block, copied from the shared one; mean pool + fc_norm.
        published = _finetune_vit(rel_pos_bias="layer", fc_norm=True)
        result = load_official_checkpoint(published, {"model": sd})
        assert sorted(result.missing_keys) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
        table = sd[prefix + "rel_pos_bias.relative_position_bias_table"]
        assert all(torch.equal(b.relative_position_bias_table, table) for b in published.rel_pos_bias)
        assert published.layer_id("rel_pos_bias.1.relative_position_bias_table") == 2  # in block 1, as BEiT's


def test_per_block_official_tables_load():
    """BEiT/SimMIM fine-tuned files keep one ``blocks.{i}.attn.relative_position_bias_table`` per block."""
    sd = random_official(official_vit_shapes("", **SMALL))
    for i in range(2):
        sd[f"blocks.{i}.attn.relative_position_bias_table"] = torch.full((15 * 15 + 3, 2), float(i))
        sd[f"blocks.{i}.attn.relative_position_index"] = official_index(8)
    del sd["rel_pos_bias.relative_position_bias_table"], sd["rel_pos_bias.relative_position_index"]
    model = _finetune_vit(rel_pos_bias="layer")
    result = load_official_checkpoint(model, {"model": sd})
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]
    assert model.rel_pos_bias[1].relative_position_bias_table.eq(1).all()


def test_bias_table_resizes_to_a_new_resolution_keeping_the_cls_entries():
    sd = random_official(official_vit_shapes("", **SMALL))
    table = sd["rel_pos_bias.relative_position_bias_table"]
    model = PlainViT(img_size=48, patch_size=4, num_classes=10, embed_dim=64, depth=2, num_heads=2, init_values=0.1,
                     use_abs_pos_emb=False, rel_pos_bias="shared")  # a 12x12 grid: 23^2 + 3 rows
    load_official_checkpoint(model, {"model": sd})
    loaded = model.rel_pos_bias.relative_position_bias_table
    assert loaded.shape == (23 * 23 + 3, 2) and torch.equal(loaded[-3:], table[-3:])
    assert torch.equal(model.rel_pos_bias.relative_position_index, official_index(12))


def test_mae_encoder_loads_into_the_published_finetuning_head():
    """MAE fine-tunes with global pooling and ``fc_norm``; its ``norm`` goes unused (main_finetune.py)."""
    sd = {k: torch.randn(s) for k, s in official_mae_shapes(**MAE_SMALL).items()}
    model = PlainViT(img_size=32, patch_size=4, num_classes=10, embed_dim=64, depth=4, num_heads=2, fc_norm=True)
    result = load_official_checkpoint(model, {"model": sd})
    assert sorted(result.missing_keys) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert result.unexpected_keys == []


def test_simmim_swin_release_is_refused_with_the_reason():
    swin = {"encoder.mask_token": torch.zeros(1, 1, 128), "encoder.patch_embed.proj.weight": torch.zeros(128, 3, 4, 4),
            "encoder.layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(121, 4),
            "encoder.layers.0.blocks.1.attn_mask": torch.zeros(64, 36, 36),  # shifted windows' masks
            "decoder.0.weight": torch.zeros(3072, 1024, 1, 1)}
    for model in (_small_simmim(), _finetune_vit()):
        with pytest.raises(ValueError, match="shifted windows"):
            load_official_checkpoint(model, {"model": swin})
    with pytest.raises(ValueError, match="shifted-window"):
        simmim_from_official_args(model_type="swin")


def test_builders_refuse_what_no_release_has():
    with pytest.raises(ValueError, match="qkv_bias"):
        simmim_from_official_args(qkv_bias=False)
    with pytest.raises(ValueError, match="both set"):
        simmim_from_official_args(use_rel_pos_bias=True)
    with pytest.raises(ValueError, match="tokenizer has 16 tokens"):
        beit_from_official_args(_tokenizer())  # vocab_size 8192
