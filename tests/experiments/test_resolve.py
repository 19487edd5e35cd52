"""``show --cost --resolve``: seeds for a difference at the published, given or measured spread, and their cost."""

from __future__ import annotations

import pytest
from synthetic_runs import stage_result, write_run

from experiments.cli import main
from experiments.registry import get_experiment
from experiments.resolve import measured_spread, published_spread


def test_resolve_at_the_published_spread(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert published_spread().sd == 0.08 and "FINETUNE.md" in published_spread().source
    assert main(["show", "imagenet-main", "--cost", "--resolve", "0.3", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "spread sd 0.08, published" in out and "4 seeds per arm, 24 runs (6 arms)" in out
    assert main(["show", "imagenet-main", "--cost", "--resolve", "0.3", "--spread", "0.3",
                 "--output", str(tmp_path)]) == 0
    assert "given (--spread)" in capsys.readouterr().out
    assert main(["show", "imagenet-main", "--resolve", "0.3"]) == 2  # --resolve needs --cost


def test_measured_spread_pools_arms_with_two_seeds(tmp_path) -> None:
    exp = get_experiment("ablation-mask-strategy", "debug")
    for strategy, values in {"random": [10.0, 12.0], "block": [5.0, 5.0, 8.0], "none": [1.0]}.items():
        for seed, value in enumerate(values):
            write_run(tmp_path, f"{strategy}-s{seed}", method="mixmim", backbone="b", seed=seed,
                      setting={"mask_strategy": strategy},
                      results={"finetune": stage_result({"top1": value}, 1, 8, 1e-3)})
    spread = measured_spread(exp, tmp_path)  # SS 2 + 6 over 1 + 2 degrees of freedom
    assert spread.sd == pytest.approx((8 / 3) ** 0.5) and "3 degrees of freedom" in spread.source
    assert measured_spread(exp, tmp_path / "absent") is None
