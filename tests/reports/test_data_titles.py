"""A table whose title and caption name its data follows the dataset its runs recorded (``--set data.*``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_runs import stage_result, write_run

from experiments.definitions.smoke import smoke_table
from reports.report import report_experiment


def _runs(exp_dir: Path, datasets: list[str]) -> Path:
    for method, dataset in zip(("mixmim", "mae"), datasets, strict=True):
        name = f"{method}-mixmim_tiny_32-s0"
        write_run(exp_dir, name, method=method, backbone="mixmim_tiny_32", seed=0,
                  results={"linprobe": stage_result({"top1": 50.0}, 3, 64, 0.1)})  # fmt: skip
        (exp_dir / name / "config.yaml").write_text(f"name: {name}\ndata:\n  dataset: {dataset}\n")
    return exp_dir


@pytest.mark.parametrize(("datasets", "title", "data_words"), [
    (["folder", "folder"], "JPEG folder (data.root), mixmim_tiny_32", "ImageFolder of JPEGs"),
    (["digits", "digits"], "Built-in digits, mixmim_tiny_32", "sklearn digits"),
    (["digits", "folder"], "Built-in digits, mixmim_tiny_32", "sklearn digits"),  # mixed: the spec's own text
])  # fmt: skip
def test_smoke_table_names_the_data_its_runs_read(tmp_path, datasets, title, data_words):
    report = report_experiment(_runs(tmp_path / "smoke", datasets), [smoke_table()], tmp_path / "out")
    assert report.markdown.startswith(f"### {title}\n") and data_words in report.markdown
    assert ("sklearn digits" in report.markdown) == (data_words == "sklearn digits")
