"""A run whose data is not its reference's dataset (class count, training images, fingerprint) carries a drift mark
in every table cell it enters; a run on the reference's data does not; runs that recorded no counts are not flagged."""

from __future__ import annotations

from pathlib import Path

from synthetic_runs import stage_result, write_run

from experiments.datasets import TRAIN_IMAGES
from reports.aggregate import build_table
from reports.drift import dataset_drift, run_dataset_drift, summarize_dataset_drift
from reports.formats import value_text
from reports.references import DatasetRef, load_references
from reports.render import format_tables
from reports.results import read_results
from reports.spec import Column, TableSpec

IMAGENET = DatasetRef(key="imagenet1k", source="s", classes=1000, train_images=1_281_167)
SPEC = TableSpec(name="t", title="t", rows=("method",),
                 columns=(Column("finetune", "top1", "Fine-tune", reference="mixmim_b_600ep_top1"),))  # fmt: skip


def test_each_data_field_is_compared_and_unrecorded_or_unknown_ones_skipped() -> None:
    assert dataset_drift({"data_classes": 1000, "data_images": 1281167.0, "data_fingerprint": "ab"}, IMAGENET) == []
    assert dataset_drift({"data_classes": 10, "data_images": 160}, IMAGENET) == [
        ("data_classes", "10", "1000"),
        ("data_images", "160", "1281167"),
    ]
    assert dataset_drift({}, IMAGENET) == []  # recorded before the counts were: not flagged
    pinned = DatasetRef(key="mine", source="s", fingerprint="f" * 64)
    assert dataset_drift({"data_fingerprint": "0" * 64, "data_classes": 7}, pinned) == [
        ("data_fingerprint", "0" * 12, "f" * 12)
    ]


def test_summary_names_stage_dataset_and_share_of_runs() -> None:
    datasets = {"finetune": IMAGENET}
    runs = [run_dataset_drift({"finetune": {"data_classes": 10}}, datasets),
            run_dataset_drift({"finetune": {"data_classes": 1000}}, datasets)]  # fmt: skip
    assert summarize_dataset_drift(runs, datasets) == "finetune (imagenet1k): classes 10 [1 of 2 runs] vs 1000"


def _run(exp: Path, name: str, classes: int, images: int) -> None:
    """A run recorded exactly as the paper's recipe, trained on ``classes`` classes and ``images`` images."""
    data = {"data_classes": classes, "data_images": images, "data_fingerprint": "c" * 64}
    write_run(exp, name, method="mixmim", backbone="mixmim_base", seed=int(name[-1]),
              results={"pretrain": stage_result({"loss": 0.5}, epochs=600, effective_batch=2048, lr=1.2e-3,
                                                precision="fp16", **data),
                       "finetune": stage_result({"top1": 85.0}, epochs=100, effective_batch=1024, lr=2e-3,
                                                precision="fp16", **data)})  # fmt: skip


def test_a_run_on_a_10_class_folder_is_flagged_in_an_imagenet_table(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _run(exp, "mixmim-s0", 1000, 1_281_167)
    table = build_table(read_results(exp, SPEC.stages), SPEC, load_references())
    cell = table.rows[0].cells[0]
    assert cell.drift == [] and "†" not in value_text(cell)
    _run(exp, "mixmim-s1", 10, 160)  # the 160-image, 10-class folder
    table = build_table(read_results(exp, SPEC.stages), SPEC, load_references())
    cell = table.rows[0].cells[0]
    data = "classes 10 [1 of 2 runs] vs 1000, training images 160 [1 of 2 runs] vs 1281167"
    assert cell.drift == [f"dataset not the reference's: pretrain (imagenet1k): {data}; finetune (imagenet1k): {data}"]
    shown = format_tables([table], "markdown")
    assert "85.00 ± 0.00 (n=2)†" in shown and "dataset not the reference's: pretrain (imagenet1k)" in shown


def test_reference_datasets_agree_with_the_cost_projection_s_sizes() -> None:
    datasets = load_references().datasets
    assert datasets["imagenet1k"].train_images == TRAIN_IMAGES["imagenet"]
    for name in ("inat2018", "inat2019", "places205", "places365"):
        assert datasets[name].train_images == TRAIN_IMAGES[name], name
