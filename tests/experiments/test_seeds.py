"""Replicates: --seeds parsing, replicated runs and tables, the seed in every random stream, and equal
results for equal seeds (a debug experiment, run for real)."""

from __future__ import annotations

import pytest
import torch

from experiments.launching import experiment_dir, launch_experiment
from experiments.registry import get_experiment
from experiments.run_filter import only_runs
from experiments.seeds import parse_seeds, replicate
from mixmim.config import ConfigError
from mixmim.runs.rundir import read_json


def test_parse_seeds() -> None:
    assert parse_seeds("3") == (0, 1, 2)
    assert parse_seeds("0,3,5") == (0, 3, 5)
    assert parse_seeds(None) is None and parse_seeds("") is None
    for bad in ("x", "0", "1,1", "-1,2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_replicate_names_seeds_and_tables() -> None:
    exp = replicate(get_experiment("ablation-mask-ratio", "debug"), (0, 2))
    assert len(exp.runs) == 10 and exp.seeds == (0, 2)
    assert [(c.name, c.seed) for c in exp.runs[:2]] == [("mixmim-mixmim_tiny_32-mask_ratio0.25-s0", 0),
                                                        ("mixmim-mixmim_tiny_32-mask_ratio0.25-s2", 2)]
    assert all(t.seeds == (0, 2) for t in exp.tables)
    again = replicate(exp, (1,))  # replicating a replicated experiment keeps one run per arm and seed
    assert [c.name for c in again.runs][:1] == ["mixmim-mixmim_tiny_32-mask_ratio0.25-s1"] and len(again.runs) == 5
    own = replicate(get_experiment("smoke", "debug"), None)  # the experiment's own seeds; reports count all found
    assert own.seeds == (0,) and all(t.seeds is None for t in own.tables)


def _debug_arms(seeds: tuple[int, ...]):
    exp = replicate(get_experiment("ablation-mask-ratio", "debug"), seeds)
    return {(c.setting["mask_ratio"], c.seed): c for c in exp.runs}


def test_seed_reaches_init_masks_and_data_order_and_arms_share_them() -> None:
    from baselines import build_method
    from mixmim.data.sampler import ResumableSampler, stream_seed
    from mixmim.engine.rng import seed_everything

    arms = _debug_arms((0, 1))
    encoders = {k: build_method(cfg).encoder.state_dict() for k, cfg in arms.items() if k[0] in (0.5, 0.75)}
    same = [torch.equal(encoders[(0.5, 0)][n], encoders[(0.75, 0)][n]) for n in encoders[(0.5, 0)]]
    differ = [torch.equal(encoders[(0.5, 0)][n], encoders[(0.5, 1)][n]) for n in encoders[(0.5, 0)]]
    assert all(same)  # two arms at one seed start from the same encoder: a paired comparison
    assert not all(differ)  # another seed, another init
    # masks: the method's generator as the trainer reseeds it (rank 0)
    draws = []
    for seed in (0, 1):
        method = build_method(arms[(0.5, seed)])
        method.reseed(stream_seed(seed, 0))
        draws.append(torch.rand(8, generator=method.generator))
    assert not torch.equal(*draws)
    # data order: one permutation per (seed, epoch), the same for every arm; seed 1 epoch 0 is not seed 0 epoch 1
    order = {}
    for s in (0, 1):
        sampler = ResumableSampler(range(64), seed=s)
        for e in (0, 1):
            sampler.set_epoch(e)
            order[(s, e)] = sampler.global_order().tolist()
    assert order[(0, 0)] != order[(1, 0)] and order[(1, 0)] != order[(0, 1)]
    # augmentation and dropout draw from the global generators, seeded per rank with the stream seed
    seed_everything(stream_seed(1, 0))
    one = torch.rand(4)
    seed_everything(stream_seed(0, 1))
    assert not torch.equal(one, torch.rand(4))
    torch.manual_seed(0)  # leave the global generator as a fresh test expects it


KEYS = {"pretrain": ("loss", "seed"), "finetune": ("train_loss", "val_loss", "top1", "top5")}  # not the timings


def _metrics(run_dir) -> dict:
    results = {stage: read_json(run_dir / stage / "result.json")["metrics"] for stage in KEYS}
    return {stage: {k: results[stage][k] for k in keys} for stage, keys in KEYS.items()}


@pytest.mark.slow
def test_equal_seeds_equal_results_other_seeds_other_results(tmp_path) -> None:
    exp = only_runs(replicate(get_experiment("ablation-mask-ratio", "debug"), (0, 1)), ["*mask_ratio0.5-*"])
    assert launch_experiment(exp, tmp_path / "a").ok
    again = only_runs(replicate(get_experiment("ablation-mask-ratio", "debug"), (0,)), ["*mask_ratio0.5-*"])
    assert launch_experiment(again, tmp_path / "b").ok
    a, b = experiment_dir(tmp_path / "a", exp), experiment_dir(tmp_path / "b", again)
    s0, s1 = _metrics(a / exp.runs[0].name), _metrics(a / exp.runs[1].name)
    assert _metrics(b / again.runs[0].name) == s0  # bit-equal: same seed, same streams
    assert s0["pretrain"]["loss"] != s1["pretrain"]["loss"]
    assert s0["finetune"]["train_loss"] != s1["finetune"]["train_loss"]
    assert read_json(a / exp.runs[1].name / "manifest.json")["seed"] == 1


@pytest.mark.slow  # counts the FLOPs of MixMIM-B at 128 px (about 10 s of CPU)
def test_small_variant_reads_imagenet100_at_128_px_and_one_arm_fits_8_gpu_hours(tmp_path) -> None:
    from experiments.cost import project_costs
    from experiments.registry import SMALL_VARIANT

    for name in SMALL_VARIANT:
        exp = get_experiment(name, "small")
        assert all(c.data.subset == "imagenet100" and c.model.img_size == 128 for c in exp.runs), name
        assert all("ImageNet-100" in t.caption for t in exp.tables), name  # the tables name what it changes
    with pytest.raises(KeyError, match="no small variant"):
        get_experiment("smoke", "small")
    arm = only_runs(get_experiment("ablation-mask-ratio", "small"), ["*mask_ratio0.5-*"]).runs
    hours = sum(c.gpu_hours for c in project_costs(arm, tmp_path, "A100"))
    assert 1 < hours <= 8  # pre-training + fine-tuning of one arm, projected on A100 (MFU 0.3 assumed)
