"""State-dict keys and shapes of the official checkpoints, written from the official naming (not from our
model), loaded with strict=True both ways."""

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.pretrain.method import mixmim_from_official_args
from mixmim.weights.checkpoint import load_official_checkpoint, method_to_official_keys

DEPTHS, HEADS, DIM = (2, 2, 18, 2), (4, 8, 16, 32), 128
WINDOWS_224 = (14, 14, 14, 7)  # after clamping to the stage resolution (56, 28, 14, 7)


def official_finetune_shapes(classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """MixMIM-B fine-tune model, as in models_mixmim_ft.py."""
    shapes = {"absolute_pos_embed": (1, 56 * 56, DIM), "patch_embed.proj.weight": (DIM, 3, 4, 4),
              "patch_embed.proj.bias": (DIM,), "patch_embed.norm.weight": (DIM,), "patch_embed.norm.bias": (DIM,)}
    for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
        d, w = DIM * 2**i, WINDOWS_224[i]
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            shapes.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "norm2.weight": (d,),
                           p + "norm2.bias": (d,), p + "attn.relative_position_bias_table": ((2 * w - 1) ** 2, heads),
                           p + "attn.relative_position_index": (w * w, w * w), p + "attn.qkv.weight": (3 * d, d),
                           p + "attn.qkv.bias": (3 * d,), p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                           p + "mlp.fc1.weight": (4 * d, d), p + "mlp.fc1.bias": (4 * d,),
                           p + "mlp.fc2.weight": (d, 4 * d), p + "mlp.fc2.bias": (d,)})
        if i < 3:
            shapes.update({f"layers.{i}.downsample.norm.weight": (4 * d,), f"layers.{i}.downsample.norm.bias": (4 * d,),
                           f"layers.{i}.downsample.reduction.weight": (2 * d, 4 * d)})
    shapes.update({"norm.weight": (1024,), "norm.bias": (1024,), "head.weight": (classes, 1024),
                   "head.bias": (classes,)})
    return shapes


def official_pretrain_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {k: v for k, v in official_finetune_shapes().items() if not k.startswith("head.")}
    shapes.update({"mask_token": (1, 1, 512), "decoder_pos_embed": (1, 49, 512), "decoder_embed.weight": (512, 1024),
                   "decoder_embed.bias": (512,), "decoder_norm.weight": (512,), "decoder_norm.bias": (512,),
                   "decoder_pred.weight": (3072, 512), "decoder_pred.bias": (3072,)})
    for k in range(8):
        p = f"decoder_blocks.{k}."
        shapes.update({p + "norm1.weight": (512,), p + "norm1.bias": (512,), p + "attn.qkv.weight": (1536, 512),
                       p + "attn.qkv.bias": (1536,), p + "attn.proj.weight": (512, 512), p + "attn.proj.bias": (512,),
                       p + "norm2.weight": (512,), p + "norm2.bias": (512,), p + "mlp.fc1.weight": (2048, 512),
                       p + "mlp.fc1.bias": (2048,), p + "mlp.fc2.weight": (512, 2048), p + "mlp.fc2.bias": (512,)})
    return shapes


def _random_state_dict(shapes):
    return {k: (torch.randint(0, 10, v) if k.endswith("index") else torch.randn(v)) for k, v in shapes.items()}


def test_finetune_keys_and_shapes_equal_official():
    model = create_backbone("mixmim_base", num_classes=1000)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(ours) == 354
    assert ours == official_finetune_shapes()


def test_pretrain_checkpoint_loads_strict_both_ways():
    sd = _random_state_dict(official_pretrain_shapes())
    model = mixmim_from_official_args()
    load_official_checkpoint(model, {"model": sd})  # strict=True inside
    exported = method_to_official_keys(model.state_dict())
    assert set(exported) == set(sd)
    for key in ("mask_token", "decoder_pred.weight", "layers.2.blocks.17.attn.qkv.weight"):
        assert torch.equal(exported[key], sd[key])


def test_pretrain_encoder_into_finetune_model_only_head_missing():
    sd = _random_state_dict(official_pretrain_shapes())
    model = create_backbone("mixmim_base", num_classes=1000)
    result = load_official_checkpoint(model, {"model": sd})
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]
    assert torch.equal(model.layers[3].blocks[1].mlp.fc2.weight, sd["layers.3.blocks.1.mlp.fc2.weight"])


def test_mismatching_checkpoint_is_rejected_with_the_keys():
    sd = _random_state_dict(official_pretrain_shapes())
    model = create_backbone("mixmim_large", num_classes=1000)
    with pytest.raises(RuntimeError, match="size mismatch|do not match|does not match"):
        load_official_checkpoint(model, {"model": sd})


def test_resolution_change_interpolates_tables_and_position_embedding():
    """224 -> 384 (windows 16/16/24/12), as the official 384 fine-tuning."""
    sd = _random_state_dict(official_finetune_shapes())
    sd["layers.0.blocks.0.attn.relative_position_bias_table"] = torch.ones(27 * 27, 4)
    model = create_backbone("mixmim_base_384", num_classes=1000)
    load_official_checkpoint(model, sd)
    table = model.layers[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (31 * 31, 4) and torch.allclose(table, torch.ones_like(table), atol=1e-5)
    assert model.absolute_pos_embed.shape == (1, 96 * 96, 128)
    index = model.layers[2].blocks[0].attn.relative_position_index
    assert index.shape == (24 * 24, 24 * 24) and int(index.max()) == 47 * 47 - 1


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official_checkpoint(create_backbone("mixmim_tiny_32"), tmp_path / "nope.pth")


@pytest.mark.parametrize("name", ["mixmim_tiny_32", "mixmim_vit_tiny_patch4_32"])
def test_checkpoint_with_a_head_loads_into_a_headless_model(name):
    sd = create_backbone(name).state_dict()  # with head.*
    model = create_backbone(name, num_classes=0)
    load_official_checkpoint(model, {"model": sd})  # the head is dropped, not refused
    torch.testing.assert_close(model.state_dict()["patch_embed.proj.weight"], sd["patch_embed.proj.weight"])
