"""``cfg.init``: this run's pre-trained encoder, the random-init control, official checkpoints, bad paths."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import BACKBONE, encoder_state, tiny_config

from mixmim.backbones import create_backbone
from mixmim.evaluate import build_eval_backbone
from mixmim.weights.init_source import InitWeightsError


def assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if not key.startswith("head."):
            assert torch.equal(own[key], value), key


def test_pretrain_init_loads_the_runs_encoder(saved_encoder):
    run_dir, state = saved_encoder
    model, source = build_eval_backbone(tiny_config(init="pretrain"), run_dir, num_classes=10)
    assert source.describe() == {"init": "pretrain", "init_path": str(run_dir / "pretrain" / "encoder.pth")}
    assert_loaded(model, state)


def test_random_init_loads_nothing_and_is_seeded(saved_encoder):
    run_dir, state = saved_encoder
    torch.manual_seed(0)
    first, source = build_eval_backbone(tiny_config(init="random"), run_dir, num_classes=0)
    torch.manual_seed(0)
    second, _ = build_eval_backbone(tiny_config(init="random"), run_dir, num_classes=0)
    assert source.describe() == {"init": "random", "init_path": None}
    key = "layers.0.blocks.0.attn.qkv.weight"
    assert not torch.equal(first.state_dict()[key], state[key])  # not the saved encoder
    assert torch.equal(first.state_dict()[key], second.state_dict()[key])  # same seed, same control


def test_official_pretraining_checkpoint_loads(official_checkpoint, tmp_path):
    path, state = official_checkpoint  # flat keys + decoder_* + mask_token + pickled argparse args
    model, source = build_eval_backbone(tiny_config(init=str(path)), tmp_path / "run", num_classes=0)
    assert source.kind == "path"
    assert_loaded(model, state)


def test_official_finetuned_checkpoint_with_another_head_loads(tmp_path):
    torch.manual_seed(5)
    finetuned = create_backbone(BACKBONE, num_classes=1000).state_dict()  # an ImageNet-1k head
    torch.save({"model": finetuned, "epoch": 99}, tmp_path / "ft.pth")
    model, _ = build_eval_backbone(tiny_config(init=str(tmp_path / "ft.pth")), tmp_path / "run", num_classes=10)
    assert model.state_dict()["head.weight"].shape == (10, model.num_features)  # mismatched head dropped
    assert_loaded(model, finetuned)
    headless, _ = build_eval_backbone(tiny_config(init=str(tmp_path / "ft.pth")), tmp_path / "run", num_classes=0)
    assert not any(k.startswith("head.") for k in headless.state_dict())


def test_engine_training_checkpoint_with_prefixed_keys_loads(tmp_path):
    state = encoder_state(seed=9)
    method_state = {**{f"encoder.{k}": v for k, v in state.items()}, "decoder.mask_token": torch.zeros(1, 1, 8)}
    torch.save({"format": 1, "model": method_state, "position": {"epoch": 1}}, tmp_path / "checkpoint-last.pth")
    cfg = tiny_config(init=str(tmp_path / "checkpoint-last.pth"))
    model, _ = build_eval_backbone(cfg, tmp_path, num_classes=0)
    assert_loaded(model, state)


def test_position_embedding_is_interpolated_to_another_resolution(official_checkpoint, tmp_path):
    path, _ = official_checkpoint  # made at 32 px: a 16x16 token grid
    model, _ = build_eval_backbone(tiny_config({"model.img_size": 64}, init=str(path)), tmp_path, num_classes=0)
    assert model.state_dict()["absolute_pos_embed"].shape == (1, 32 * 32, 32)


def test_missing_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "checkpoint.pth"
    with pytest.raises(InitWeightsError, match="no such checkpoint file") as err:
        build_eval_backbone(tiny_config(init=str(missing)), tmp_path, num_classes=10)
    assert str(missing) in str(err.value) and "'random'" in str(err.value)


def test_unreadable_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InitWeightsError, match="not a readable PyTorch checkpoint") as err:
        build_eval_backbone(tiny_config(init=str(tmp_path / "junk.pth")), tmp_path, num_classes=0)
    assert str(tmp_path / "junk.pth") in str(err.value) and "weights_only=False" not in str(err.value)
    torch.save({"model": create_backbone("mixmim_small_64", num_classes=0).state_dict()}, tmp_path / "other.pth")
    with pytest.raises(InitWeightsError, match="does not fit backbone"):
        build_eval_backbone(tiny_config(init=str(tmp_path / "other.pth")), tmp_path, num_classes=0)
