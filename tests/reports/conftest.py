"""A small experiment written in the run-directory format, with the defects a real one has.

Runs (experiment ``tiny``; backbone ``mixmim_b``; ``setting.mask_ratio`` 0.5 unless said):
- ``mixmim-s0``: every stage done, recipe equal to the test reference recipe (no drift), coco with torchvision.
- ``mixmim-s1``: pre-trained 300 epochs instead of 600 (drift); kNN top-1 not finite; coco with detectron2.
- ``mixmim-s2``: absent (a declared seed without a run directory).
- ``mixmim-r075-s0``: mask ratio 0.75.
- ``mae-s0``: done. ``mae-s1``: corrupt ``finetune/result.json``. ``mae-s2``: fine-tuning unfinished.
- ``broken-run``: unreadable manifest and no config: cannot be placed in any row.
- ``_report``: an output folder, not a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_runs import stage_result, write_run

from reports.references import References, load_references
from reports.spec import Column, TableSpec

DATA = Path(__file__).with_name("data")
GOLDEN = Path(__file__).with_name("golden")
LOSS = [2.0, 1.5, 1.2, 1.0, 0.9]


def _pretrain(epochs: int = 600, method_gpu_hours: float = 10.0) -> dict:
    return stage_result(
        {"loss": 0.9},
        epochs,
        2048,
        1.2e-3,
        "fp16",
        gpu_hours=method_gpu_hours * epochs / 600,
        images_per_s=1000.0,
        gflops=16.3,
    )


def _finetune(top1: float) -> dict:
    return stage_result({"top1": top1, "top5": 97.0}, 100, 1024, 2e-3, "fp16", gpu_hours=5.0)


def _knn(top1: float | None) -> dict:
    return stage_result({"top1": top1}, 0, 256, 0.0, "fp32", gpu_hours=0.1)


def _coco(ap_box: float, engine: str) -> dict:
    return stage_result({"ap_box": ap_box, "ap_mask": ap_box - 4}, 12, 16, 1e-4, "fp32", gpu_hours=2.0, engine=engine)


def write_tiny_experiment(exp_dir: Path) -> Path:
    """Write the runs described in the module docstring under ``exp_dir`` and return it."""
    ratio = {"mask_ratio": 0.5}
    curves = {"pretrain": LOSS}
    write_run(
        exp_dir,
        "mixmim-s0",
        method="mixmim",
        backbone="mixmim_b",
        seed=0,
        setting=ratio,
        curves=curves,
        results={
            "pretrain": _pretrain(),
            "finetune": _finetune(85.0),
            "knn": _knn(60.0),
            "coco": _coco(50.0, "torchvision"),
        },
    )
    write_run(
        exp_dir,
        "mixmim-s1",
        method="mixmim",
        backbone="mixmim_b",
        seed=1,
        setting=ratio,
        curves=curves,
        results={
            "pretrain": _pretrain(300),
            "finetune": _finetune(85.2),
            "knn": _knn(None),
            "coco": _coco(51.0, "detectron2"),
        },
    )
    write_run(
        exp_dir,
        "mixmim-r075-s0",
        method="mixmim",
        backbone="mixmim_b",
        seed=0,
        setting={"mask_ratio": 0.75},
        results={"pretrain": _pretrain(), "finetune": _finetune(84.0)},
    )
    write_run(
        exp_dir,
        "mae-s0",
        method="mae",
        backbone="mixmim_b",
        seed=0,
        setting=ratio,
        curves=curves,
        results={"pretrain": _pretrain(800, 8.0), "finetune": _finetune(83.5), "knn": _knn(55.0)},
    )
    write_run(
        exp_dir,
        "mae-s1",
        method="mae",
        backbone="mixmim_b",
        seed=1,
        setting=ratio,
        results={"pretrain": _pretrain(800, 8.0), "finetune": _finetune(99.0), "knn": _knn(57.0)},
    )
    (exp_dir / "mae-s1" / "finetune" / "result.json").write_text('{"stage": "finetune", "metr', encoding="utf-8")
    write_run(
        exp_dir,
        "mae-s2",
        method="mae",
        backbone="mixmim_b",
        seed=2,
        setting=ratio,
        results={"pretrain": _pretrain(800, 8.0), "finetune": None, "knn": _knn(56.0)},
        curves={"finetune": [1.0, 0.9, 0.8]},
    )
    broken = exp_dir / "broken-run"
    broken.mkdir()
    (broken / "manifest.json").write_text("not json at all", encoding="utf-8")
    (exp_dir / "mixmim-s0" / "pretrain" / "train.log").write_text("epoch 0 loss 2.0\n", encoding="utf-8")
    (exp_dir / "mixmim-s0" / "pretrain" / "checkpoint-last.pth").write_bytes(b"\0" * 64)
    (exp_dir / "_report").mkdir()
    return exp_dir


def tiny_specs() -> list[TableSpec]:
    """The tables the tests render: main (with row order, labels, seeds), ablation, detection, budget."""
    mask_05 = {"setting.mask_ratio": 0.5}
    return [
        TableSpec(
            name="main",
            title="ImageNet-1K (tiny)",
            rows=("method",),
            seeds=(0, 1, 2),
            filters=mask_05,
            columns=(
                Column("finetune", "top1", "Fine-tune", reference="{method}_test_top1"),
                Column("knn", "top1", "kNN"),
            ),
            row_order=("MixMIM", "MAE", "BEiT"),
            labels={"mixmim": "MixMIM", "mae": "MAE"},
            caption="Mean over seeds.",
        ),
        TableSpec(
            name="mask_ratio",
            title="Mask ratio",
            rows=("setting.mask_ratio",),
            filters={"method": "mixmim"},
            columns=(Column("finetune", "top1", "Top-1", reference="ablation_mask_ratio_{setting.mask_ratio}_top1"),),
        ),
        TableSpec(
            name="coco",
            title="COCO",
            rows=("method",),
            filters={"method": "mixmim", **mask_05},
            columns=(Column("coco", "ap_box", "AP box", reference="{method}_test_coco_ap_box", digits=1),),
        ),
        TableSpec(name="budget", title="Budget", rows=("method",), filters=mask_05, columns=(), budget=True),
    ]


@pytest.fixture(scope="session")
def tiny_exp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_experiment(tmp_path_factory.mktemp("outputs") / "tiny")


@pytest.fixture(scope="session")
def test_refs() -> References:
    return load_references([DATA / "references.yaml"])


@pytest.fixture(scope="session")
def specs() -> tuple[TableSpec, ...]:
    return tuple(tiny_specs())
