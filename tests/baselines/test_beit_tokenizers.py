"""BEiT's tokenizers: the k-means codebook (deterministic, cached by its stage, used as the targets) and the
DALL-E encoder loader (official layout, clear rejection of wrong files)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from baseline_helpers import SMALL_VOCAB, fixed_images, small_method

from baselines import build_method, method_defaults
from baselines.beit import BEiT
from baselines.tokenizers import (
    DALLE_ENCODER_URL,
    DalleEncoder,
    DalleTokenizer,
    KMeansTokenizer,
    load_dalle_encoder,
    run_tokenizer_stage,
)
from mixmim.backbones import create_backbone
from mixmim.config import RunConfig, apply_overrides

GRID = (4, 4)


def test_kmeans_is_deterministic_for_a_seed():
    images = fixed_images(16, seed=4)
    a = KMeansTokenizer.fit(images, GRID, 8, seed=0)
    b = KMeansTokenizer.fit(images, GRID, 8, seed=0)
    c = KMeansTokenizer.fit(images, GRID, 8, seed=1)
    torch.testing.assert_close(a.centroids, b.centroids, rtol=0, atol=0)
    assert not torch.equal(a.centroids, c.centroids)
    codes = a(images, GRID)
    assert codes.shape == (16, *GRID) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 8 and len(codes.unique()) > 1


def test_kmeans_save_load_roundtrip(tmp_path):
    images = fixed_images(8)
    tok = KMeansTokenizer.fit(images, GRID, 8, seed=0)
    tok.save(tmp_path / "kmeans.pt")
    loaded = KMeansTokenizer.load(tmp_path / "kmeans.pt")
    assert torch.equal(loaded(images, GRID), tok(images, GRID)) and loaded.fit_info == tok.fit_info
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        KMeansTokenizer.load(tmp_path / "missing.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a k-means tokenizer"):
        KMeansTokenizer.load(tmp_path / "other.pt")


@pytest.mark.parametrize("backbone", ["mixmim_tiny_32", "mixmim_vit_tiny_patch4_32"])
def test_beit_targets_are_the_tokenizer_codes(backbone, codebooks):
    method = small_method("beit", backbone, codebooks[backbone]).eval()
    images = fixed_images(4)
    codes = method.tokenizer(images, method.token_grid).flatten(1)  # [B, L]
    torch.testing.assert_close(method.targets(images), codes)
    out = method(images)
    labels = codes[out["mask"].bool()]
    torch.testing.assert_close(out["loss"], F.cross_entropy(out["pred"], labels))
    perfect = 50.0 * F.one_hot(labels, SMALL_VOCAB).float()  # logits that name the codes: loss ~ 0
    assert method.forward_loss(images, perfect, out["mask"]).item() < 1e-6
    assert "tokenizer" not in dict(method.named_children())
    assert not any("tokenizer" in k for k in method.state_dict())


def test_beit_block_mask_count_and_grid():
    tok = KMeansTokenizer(torch.randn(SMALL_VOCAB, 48))
    vit_b = BEiT(create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0), tok)  # 8x8 grid
    assert vit_b.num_masked == round(64 * 75 / 196)
    masks = vit_b.draw_mask(16)
    assert masks.shape == (16, 8, 8) and (masks.flatten(1).sum(1) <= vit_b.num_masked).all()
    assert masks.flatten(1).sum(1).float().mean() > 0.8 * vit_b.num_masked


def test_tokenizer_stage_fits_once_and_feeds_build_method(tmp_path):
    cfg = apply_overrides(RunConfig(), {**method_defaults("beit"), "model.backbone": "mixmim_tiny_32",
                                        "method.vocab_size": SMALL_VOCAB, "data.max_train_images": 64,
                                        "model.drop_path": 0.0})
    result = run_tokenizer_stage(cfg, tmp_path)
    codebook = tmp_path / "tokenizer" / "kmeans.pt"
    assert result["status"] == "done" and result["metrics"]["vocab_size"] == SMALL_VOCAB and codebook.is_file()
    stamp = codebook.stat().st_mtime_ns
    assert run_tokenizer_stage(cfg, tmp_path) == result and codebook.stat().st_mtime_ns == stamp  # cached
    method = build_method(cfg, tmp_path)
    assert isinstance(method, BEiT) and method.tokenizer.vocab_size == SMALL_VOCAB
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        build_method(cfg, tmp_path / "elsewhere")


# --- DALL-E -----------------------------------------------------------------------------------------------


def _tiny_dalle() -> DalleEncoder:
    torch.manual_seed(0)
    return DalleEncoder(n_hid=8, n_blk_per_group=1, vocab_size=32)


def test_dalle_layout_is_the_official_one():
    with torch.device("meta"):
        enc = DalleEncoder()
    sd = enc.state_dict()
    assert tuple(sd["blocks.input.w"].shape) == (256, 3, 7, 7)
    assert tuple(sd["blocks.group_1.block_1.res_path.conv_1.w"].shape) == (64, 256, 3, 3)
    assert tuple(sd["blocks.group_2.block_1.id_path.w"].shape) == (512, 256, 1, 1)
    assert "blocks.group_1.block_1.id_path.w" not in sd  # same width: identity
    assert tuple(sd["blocks.output.conv.w"].shape) == (8192, 2048, 1, 1)
    assert len(sd) == 2 + 4 * 2 * 8 + 3 * 2 + 2  # input, 8 blocks x 4 convs, 3 id paths, output


def test_dalle_state_dict_file_loads_and_tokenizes(tmp_path):
    enc = _tiny_dalle()
    torch.save(enc.state_dict(), tmp_path / "encoder.pth")
    tok = DalleTokenizer.from_file(tmp_path / "encoder.pth")
    assert tok.vocab_size == 32
    images = fixed_images(2)
    codes = tok(images, GRID)
    assert codes.shape == (2, *GRID) and int(codes.max()) < 32
    x = (0.8 * F.interpolate((images * 0.226 + 0.449).clamp(0, 1), size=(32, 32), mode="bicubic",
                             antialias=True).clamp(0, 1) + 0.1)
    assert (enc(x).argmax(1) == codes).float().mean() > 0.9  # same pipeline up to the exact denormalisation


def test_dalle_reads_the_official_pickled_module_without_its_package(tmp_path, monkeypatch):
    """``encoder.pkl`` is a pickled ``dall_e.encoder.Encoder``: simulate one, then read it with no ``dall_e``."""
    enc = _tiny_dalle()
    fake = {name: types.ModuleType(name) for name in ("dall_e", "dall_e.encoder", "dall_e.utils")}
    renames = {"DalleEncoder": ("dall_e.encoder", "Encoder"),
               "DalleEncoderBlock": ("dall_e.encoder", "EncoderBlock"),
               "DalleConv2d": ("dall_e.utils", "Conv2d")}
    for module in enc.modules():
        if type(module).__name__ in renames:
            mod_name, cls_name = renames[type(module).__name__]
            official = getattr(fake[mod_name], cls_name, None)
            if official is None:
                official = type(cls_name, (type(module),), {"__module__": mod_name, "__qualname__": cls_name})
                setattr(fake[mod_name], cls_name, official)
            module.__class__ = official
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    torch.save(enc, tmp_path / "encoder.pkl")
    for name in fake:
        monkeypatch.delitem(sys.modules, name)
    loaded = load_dalle_encoder(tmp_path / "encoder.pkl")
    for key, value in enc.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_dalle_rejects_wrong_files_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=DALLE_ENCODER_URL):
        load_dalle_encoder(tmp_path / "missing.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=f"not a DALL-E encoder file.*{DALLE_ENCODER_URL}"):
        load_dalle_encoder(tmp_path / "garbage.pkl")
    vit = create_backbone("mixmim_vit_tiny_patch4_32", num_classes=0)
    torch.save({"model": vit.state_dict()}, tmp_path / "mae.pth")
    with pytest.raises(ValueError, match=r"blocks\.input\.w.*Expected the DALL-E dVAE encoder.*encoder\.pkl"):
        load_dalle_encoder(tmp_path / "mae.pth")
    decoder_like = _tiny_dalle().state_dict()
    decoder_like["blocks.input.w"] = torch.zeros(8, 32, 1, 1)
    torch.save(decoder_like, tmp_path / "decoder.pkl")
    with pytest.raises(ValueError, match="decoder"):
        load_dalle_encoder(tmp_path / "decoder.pkl")
    truncated = _tiny_dalle().state_dict()
    del truncated["blocks.group_3.block_1.res_path.conv_2.w"]
    torch.save(truncated, tmp_path / "truncated.pth")
    with pytest.raises(ValueError, match=r"missing \['blocks\.group_3\.block_1\.res_path\.conv_2\.w'\]"):
        load_dalle_encoder(tmp_path / "truncated.pth")


def test_beit_runs_with_the_dalle_tokenizer(tmp_path):
    path = tmp_path / "encoder.pth"
    torch.save(_tiny_dalle().state_dict(), path)
    cfg = apply_overrides(RunConfig(), {**method_defaults("beit"), "model.backbone": "mixmim_tiny_32",
                                        "method.tokenizer": "dalle", "method.tokenizer_path": str(path),
                                        "method.vocab_size": 32, "model.drop_path": 0.0})
    method = build_method(cfg)
    out = method(fixed_images(2))
    out["loss"].backward()
    assert out["pred"].shape[1] == 32 and torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="tokenizer_path"):
        build_method(apply_overrides(cfg, {"method.tokenizer_path": ""}))
