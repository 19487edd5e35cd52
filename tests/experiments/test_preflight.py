"""``mixmim-bench preflight``: stage shapes, the stage's own build stepped through the Trainer on JPEGs, rows and
table in ``_preflight/`` (never a run folder), failures as one line each, and the cost projection's source.

The ``slow`` tests run the real shapes on the CPU with batch 2 and K=1 (docs/preflight.md gives their times).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from baselines.registry import CARDS
from experiments.cli import main
from experiments.preflight.configure import PreflightData, stage_setup
from experiments.preflight.failures import config_key
from experiments.preflight.projection import median_step, memory_at_recipe
from experiments.preflight.rows import ROWS, find_preflight_row, preflight_rows
from experiments.preflight.shapes import plan_chains
from experiments.registry import get_experiment
from mixmim.config import apply_overrides


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "_preflight" / ROWS).read_text().splitlines()]


def _only_preflight(folder: Path) -> None:
    """Nothing but ``_preflight`` in the experiment folder, and no result or checkpoint left in it."""
    assert [p.name for p in folder.iterdir()] == ["_preflight"]
    left = [p for p in (folder / "_preflight").rglob("*") if p.name in ("result.json", "checkpoint-last.pth")]
    assert left == []


def test_shapes_cover_runs_once_per_stage_shape():
    runs = get_experiment("imagenet-main", "full").runs
    chains = plan_chains(runs)
    assert [c.name for c in chains] == [f"mixmim-mixmim_{s}-default-pretrain" for s in ("base", "large", "huge")]
    base = chains[0].shapes
    assert [s.stage for s in base] == ["pretrain", "finetune"]
    assert all(len(s.runs) == 2 for s in base)  # the 300- and 600-epoch runs share every shape
    fixed = plan_chains(get_experiment("fixed-encoder", "full").runs)
    assert len(fixed) == 2 * len(CARDS)  # every method on two encoders
    assert [s.stage for s in fixed[3].shapes] == ["tokenizer", "pretrain", "finetune", "linprobe"]


def test_stage_setup_changes_only_steps_batch_data_and_says_so(tmp_path):
    cfg = get_experiment("transfer-classification", "full").runs[0]
    data = PreflightData(imagenet=tmp_path / "jpegs")
    setup = stage_setup(cfg, "finetune", 3, 2, data, tmp_path / "scratch")
    new = setup.cfg
    assert (new.finetune.max_steps, new.finetune.batch_size, new.data.root) == (3, 2, str(tmp_path / "jpegs"))
    assert (new.finetune.blr, new.finetune.epochs, new.finetune.precision) == (cfg.finetune.blr, cfg.finetune.epochs,
                                                                              cfg.finetune.precision)
    assert new.init == str(tmp_path / "scratch" / "standin-encoder.pth") and setup.standin is not None
    assert any("does not exist" in w for w in setup.warnings) and any("init=" in w for w in setup.warnings)


def test_cpu_maps_the_gpu_decode_path_to_cpu_and_says_so(monkeypatch):
    from experiments.preflight.worker import map_decode
    from mixmim.config import RunConfig
    from mixmim.data.gpu_decode import CPU_OVERRIDE_ENV

    monkeypatch.delenv(CPU_OVERRIDE_ENV, raising=False)
    cfg = RunConfig()
    cfg.data.decode = "gpu"
    assert map_decode(cfg, cuda=True) is None and cfg.data.decode == "gpu"  # a GPU runs the recipe as it is
    assert "mapped to cpu" in map_decode(cfg, cuda=False) and cfg.data.decode == "cpu"
    assert map_decode(cfg, cuda=False) is None  # nothing left to map
    cfg.data.decode = "gpu"
    monkeypatch.setenv(CPU_OVERRIDE_ENV, "1")  # the documented override runs the GPU path on the CPU
    assert map_decode(cfg, cuda=False) is None and cfg.data.decode == "gpu"


def test_config_key_names_what_to_change():
    assert config_key("pretrain", "ValueError: mask_unit 8 px must ... divide img_size (33 px)") == "model.img_size"
    assert config_key("coco", "ValueError: img_size 1000 is not divisible by 32") == "coco.img_size"
    assert config_key("tokenizer", "FileNotFoundError: DALL-E encoder weights x").startswith("method.tokenizer_path")
    assert config_key("finetune", "OutOfMemoryError: CUDA out of memory").startswith("finetune.batch_size")
    assert config_key("finetune", "InitWeightsError: init=/x: no such checkpoint") == "init"
    assert config_key("tokenizer", "ValueError: 784 cells cannot fit a vocabulary of 8192").startswith("method.vocab")


def test_projection_median_and_memory_extrapolation():
    assert median_step([]) == (None, "no steps")
    assert median_step([9.0])[0] == 9.0 and median_step([9.0, 2.0, 4.0, 3.0])[0] == 3.0  # the warm-up step left out
    row = {"device": "cpu", "batch_size": 2, "peak_bytes": 1300, "start_bytes": 100, "state_bytes": 1000,
           "precision": "fp32"}
    need, basis = memory_at_recipe(row, 128)  # state + (1300 - 100 - 1000) / 2 per image x 128
    assert need == 1000 + 100 * 128 and basis.startswith("extrapolated from cpu batch 2")
    # one step: the optimizer state (600 of the 1000) was made after the activations were freed, so the peak held
    # weights, gradients and activations only: (1300 - 100 - 400) / 2 per image
    one = {**row, "step_times_s": [4.0], "optimizer_bytes": 600}
    need, basis = memory_at_recipe(one, 128)
    assert need == 1000 + 400 * 128 and basis.endswith("1 step: optimizer state not yet resident (upper bound)")
    assert memory_at_recipe({**one, "step_times_s": [4.0, 3.0]}, 128)[0] == 1000 + 100 * 128
    cuda = {**row, "device": "NVIDIA H100 80GB HBM3", "batch_size": 128}
    assert memory_at_recipe(cuda, 128) == (1300.0, "measured (CUDA max allocated)")


def test_an_upper_bound_above_the_gpu_is_no_verdict(tmp_path):
    from experiments.preflight.projection import project

    cfg = get_experiment("imagenet-main", "full").runs[0]
    row = {"device": "cpu", "batch_size": 2, "start_bytes": 0, "state_bytes": 1e9, "optimizer_bytes": 5e8,
           "precision": "fp32", "peak_bytes": 3e9, "step_times_s": [4.0]}  # fmt: skip
    assert project(row, cfg, [cfg], "pretrain", "A100", tmp_path)["fits"] is None  # 1 step: 160 GB at most
    assert project({**row, "step_times_s": [4.0, 3.0]}, cfg, [cfg], "pretrain", "A100", tmp_path)["fits"] is False
    assert project({**row, "peak_bytes": 1.2e9}, cfg, [cfg], "pretrain", "A100", tmp_path)["fits"] is True


def _cuda_row(cfg, stage: str, **extra) -> dict:
    from experiments.preflight.rows import recipe_batch, run_precision

    return {"time": "2026-12-07T20:00:00+00:00", "status": "passed", "stage": stage, "method": cfg.method.name,
            "backbone": cfg.model.backbone, "img_size": cfg.model.img_size, "coco_img_size": 0,
            "device": "NVIDIA H100 80GB HBM3", "precision": run_precision(cfg, stage),
            "batch_size": recipe_batch(cfg, stage), "images_per_s_step": 2000.0, **extra}


def test_show_cost_names_a_matching_preflight_row_else_the_estimate(tmp_path, capsys):
    cfg = get_experiment("imagenet-main", "full").runs[0]
    folder = tmp_path / "imagenet-main" / "_preflight"
    folder.mkdir(parents=True)
    rows = [_cuda_row(cfg, "pretrain"), {**_cuda_row(cfg, "finetune"), "device": "cpu", "batch_size": 2}]
    (folder / ROWS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert find_preflight_row(preflight_rows(tmp_path), cfg, "pretrain", "H100") is not None
    assert find_preflight_row(preflight_rows(tmp_path), cfg, "pretrain", "A100") is None
    assert main(["show", "imagenet-main", "--cost", "--gpu", "H100", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if cfg.name in x and "| pretrain" in x)
    # 1,281,167 images x 300 epochs / 2000 img/s/GPU / 3600 = 53.4 GPU-hours, from the preflight row
    assert "preflight: NVIDIA H100" in line and "| 53.4 " in line
    finetune = next(x for x in out.splitlines() if cfg.name in x and "| finetune" in x)
    assert "estimate:" in finetune and "preflight on cpu beside it: batch 2" in finetune
    assert "CPU-hours of 1 process, not GPU-hours; not H100 at the run's batch" in finetune and ROWS in finetune
    slower = apply_overrides(cfg, {"pretrain.batch_size": 64})  # another configuration: not matched
    assert find_preflight_row(preflight_rows(tmp_path), slower, "pretrain", "H100") is None


def test_rows_beside_are_the_newest_per_device_the_run_s_own_experiment_first():
    from experiments.preflight.rows import rows_per_device

    cfg = get_experiment("imagenet-main", "full").runs[0]
    mine = {**_cuda_row(cfg, "pretrain"), "device": "cpu", "experiment": cfg.experiment, "time": "1"}
    newer = {**mine, "experiment": "coco", "time": "2"}  # the same shape, measured by the coco preflight later
    gpu = {**mine, "device": "NVIDIA H100 80GB HBM3", "experiment": "coco"}
    rows = [(newer, "coco"), (gpu, "coco"), (mine, "mine")]  # newest first, as preflight_rows gives them
    assert rows_per_device(rows, cfg, "pretrain") == [(gpu, "coco"), (mine, "mine")]
    assert rows_per_device(rows, cfg, "finetune") == []


def test_budget_gpu_hours_converts_with_a_gpu_preflight_row(tmp_path):
    from experiments.budget import measured_images_per_s

    cfg = get_experiment("imagenet-main", "full").runs[0]
    folder = tmp_path / "imagenet-main" / "_preflight"
    folder.mkdir(parents=True)
    (folder / ROWS).write_text(json.dumps(_cuda_row(cfg, "pretrain")) + "\n")
    rate, source = measured_images_per_s(cfg, tmp_path)
    assert rate == 2000.0 and source.startswith("preflight ")


def _cost_line(out: str, run: str, stage: str) -> str:
    return next(x for x in out.splitlines() if run in x and f"| {stage} " in x)


def test_show_cost_after_a_cpu_preflight_names_its_row_beside_never_as_gpu_hours(tmp_path, capsys):
    """End to end on this CPU: a real preflight (debug shapes), then ``show --cost`` names its row, device, batch and
    precision and gives its hours as CPU-hours of 1 process."""
    show = ["show", "imagenet-main", "--variant", "debug", "--cost", "--output", str(tmp_path)]
    assert main(show) == 0 and "preflight on" not in capsys.readouterr().out  # no row yet: nothing named
    assert main(["preflight", "imagenet-main", "--variant", "debug", "--only", "*sizeMixMIM-B*", "--output",
                 str(tmp_path), "--steps", "2"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(show) == 0
    out = capsys.readouterr().out
    rows = str(tmp_path / "imagenet-main-debug" / "_preflight" / ROWS)
    for run in ("mixmim-mixmim_tiny_32-pretrain_epochs300-sizeMixMIM-B-s0", "mixmim-mixmim_tiny_32-pretrain_epochs600"):
        for stage in ("pretrain", "finetune"):
            line = _cost_line(out, run, stage)
            assert "| 0 " in line and "no GPU-hours | preflight on cpu beside it: batch 2 fp32, " in line, line
            assert "CPU-hours of 1 process, not GPU-hours (" in line and rows in line, line


def test_broken_stages_are_reported_not_raised(tmp_path, capsys):
    """A resolution the backbone cannot take and a missing tokenizer: one line each, exit 1, later stages
    blocked, no run folder."""
    code = main(["preflight", "fixed-encoder", "--variant", "debug", "--only", "mixmim-mixmim_tiny_32-*",
                 "--only", "beit-mixmim_tiny_32-*", "--output", str(tmp_path), "--steps", "1",
                 "--set", "model.img_size=33", "--set", "method.tokenizer=dalle",
                 "--set", "method.tokenizer_path=/nonexistent/encoder.pkl"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED pretrain of mixmim-mixmim_tiny_32" in err and "-> change model.img_size" in err
    assert "FAILED tokenizer of beit-mixmim_tiny_32" in err and "-> change method.tokenizer_path" in err
    rows = _rows(tmp_path / "fixed-encoder-debug")
    assert {r["status"] for r in rows if r["stage"] in ("finetune", "linprobe")} == {"blocked"}
    _only_preflight(tmp_path / "fixed-encoder-debug")


@pytest.fixture
def scratch(tmp_path):
    """The chains' scratch folder of the real-shape tests: on the RAM filesystem /dev/shm where there is one (the
    checkpoints, 1-1.4 GB per stage, cost the disk 10 s each here), else under tmp_path; empty again afterwards."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path / "scratch"
    folder.mkdir(exist_ok=True)
    yield folder
    left = list(folder.iterdir())
    shutil.rmtree(folder, ignore_errors=True)
    assert left == []  # every chain's scratch run folder was removed


def _passed_at_real_shapes(rows: list[dict], stages: set[str], batch: int = 2) -> None:
    assert {r["stage"] for r in rows} == stages
    for r in rows:
        assert r["status"] == "passed", r
        assert r["peak_bytes"] > 0 and r.get("loader_images_per_s", 1) > 0
        if r["stage"] in ("pretrain", "finetune", "linprobe", "coco"):
            assert len(r["step_times_s"]) == 1 and r["batch_size"] == batch and r["precision"] == "fp32"
            assert r["checkpoint_bytes"] > 0 and r["memory_at_recipe_bytes"] > 0


@pytest.mark.slow
def test_preflight_imagenet_main_base_at_real_shapes(tmp_path, scratch, capsys):
    """MixMIM-B pre-training and fine-tuning at 224 px on 500x375 JPEGs, fp16 mapped to fp32 (L/H: docs)."""
    assert main(["preflight", "imagenet-main", "--only", "mixmim-mixmim_base-*", "--output", str(tmp_path),
                 "--steps", "1", "--batch-size", "2", "--scratch", str(scratch)]) == 0  # fmt: skip
    rows = _rows(tmp_path / "imagenet-main")
    _passed_at_real_shapes(rows, {"pretrain", "finetune"})
    pretrain = rows[0]
    assert len(pretrain["runs"]) == 2 and pretrain["checkpoint_bytes"] > 1e9  # MixMIM-B + AdamW state
    assert any("fp16 mapped to fp32" in n for n in pretrain["notes"])
    assert (tmp_path / "imagenet-main" / "_preflight" / "preflight.md").read_text().startswith("# Preflight")
    _only_preflight(tmp_path / "imagenet-main")
    assert main(["show", "imagenet-main", "--cost", "--gpu", "A100", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = _cost_line(out, "mixmim-mixmim_base-pretrain_epochs300", "pretrain")  # the A100 estimate, the row beside
    assert "estimate:" in line and "| preflight on cpu beside it: batch 2 fp32" in line, line
    assert "CPU-hours of 1 process, not GPU-hours; not A100 at the run's batch 128 fp16" in line, line


@pytest.mark.slow
def test_preflight_fixed_encoder_every_method_on_both_backbones(tmp_path, scratch):
    assert main(["preflight", "fixed-encoder", "--output", str(tmp_path), "--steps", "1", "--batch-size", "2",
                 "--scratch", str(scratch)]) == 0  # fmt: skip
    rows = _rows(tmp_path / "fixed-encoder")
    _passed_at_real_shapes(rows, {"tokenizer", "pretrain", "finetune", "linprobe"})
    assert {(r["method"], r["backbone"]) for r in rows if r["stage"] == "pretrain"} == {
        (m, b) for m in CARDS for b in ("mixmim_base", "mixmim_vit_base_patch16")}  # every registered method
    fits = [n for r in rows if r["stage"] == "tokenizer" for n in r["notes"] if n.startswith("tokenizer fitted on")]
    assert sorted(fits) == [f"tokenizer fitted on {n} generated images (8232 cells for 8192 codes), the fewest that "
                            "give a cell per code" for n in (168, 42)], fits  # Swin-B 7x7 cells, ViT-B 14x14
    _only_preflight(tmp_path / "fixed-encoder")


@pytest.mark.slow
def test_preflight_coco_builtin_engine_at_1024(tmp_path, scratch):
    """Batch 1: at batch 2 the CPU process of Mask R-CNN at 1024 px on MixMIM-B reached 7.5 GB (docs/preflight.md)."""
    assert main(["preflight", "coco", "--only", "mixmim-mixmim_base-*", "--output", str(tmp_path), "--steps", "1",
                 "--batch-size", "1", "--set", "coco.engine=torchvision", "--scratch", str(scratch)]) == 0  # fmt: skip
    rows = _rows(tmp_path / "coco")
    _passed_at_real_shapes(rows, {"pretrain", "coco"}, batch=1)
    assert rows[1]["coco_img_size"] == 1024
    _only_preflight(tmp_path / "coco")
