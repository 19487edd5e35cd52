"""Typed overrides: right types pass, unknown keys name the closest valid keys, YAML round-trips."""

import pytest

from mixmim.config import ConfigError, RunConfig, apply_overrides, load_yaml, to_dict, to_yaml


def test_overrides_are_typed():
    cfg = apply_overrides(RunConfig(), ["pretrain.epochs=10", "method.mask_ratio=0.75", "pretrain.betas=[0.9,0.99]",
                                        "launch.slurm_extra={comment: hi}"])
    assert cfg.pretrain.epochs == 10 and cfg.method.mask_ratio == 0.75 and cfg.pretrain.betas == (0.9, 0.99)
    assert cfg.launch.slurm_extra == {"comment": "hi"}
    assert RunConfig().pretrain.epochs == 600  # the input is not modified
    assert apply_overrides(RunConfig(), {"seed": 3}).seed == 3


def test_unknown_key_suggests_close_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'pretrain.epoch'.*pretrain.epochs"):
        apply_overrides(RunConfig(), ["pretrain.epoch=3"])


@pytest.mark.parametrize("override", ["pretrain.epochs=abc", "method.norm_pix_loss=maybe"])
def test_bad_value_names_key_and_type(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"'{key}'"):
        apply_overrides(RunConfig(), [override])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(RunConfig(), ["pretrain.epochs"])


def test_yaml_roundtrip(tmp_path):
    cfg = apply_overrides(RunConfig(), ["name=r1", "setting={mask_ratio: 0.25}", "stages=[pretrain,knn]"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    back = load_yaml(path)
    assert back == cfg and to_dict(back)["setting"] == {"mask_ratio": 0.25}
