"""report_experiment and the review bundle: contents, index, plots, versioning (never overwritten)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from reports.references import References
from reports.report import ReportError, ReportResult, report_experiment
from reports.spec import Column, TableSpec

COMMAND = "mixmim-bench report tiny --output OUT"


@pytest.fixture(scope="module")
def first_report(
    tiny_exp: Path, tmp_path_factory: pytest.TempPathFactory, specs: tuple[TableSpec, ...], test_refs: References
) -> ReportResult:
    out = tmp_path_factory.mktemp("report")
    return report_experiment(tiny_exp, specs, out, references=test_refs, command=COMMAND)


def test_result_holds_tables_and_paths(first_report: ReportResult) -> None:
    assert first_report.markdown.startswith("### ImageNet-1K (tiny)")
    assert set(first_report.tables) == {"markdown", "latex", "csv", "html"}
    assert first_report.bundle_dir.name == "tiny-report-001"
    assert first_report.zip_path.is_file() and first_report.zip_path in first_report.files


def test_bundle_contents(first_report: ReportResult) -> None:
    bundle = first_report.bundle_dir
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    expected = {
        "README.md",
        "tables.md",
        "tables.tex",
        "tables.csv",
        "tables.html",
        "tables_standalone.tex",
        "results.csv",
        "references/references.yaml",
        "plots/pretrain_loss.png",
        "plots/pretrain_loss.pdf",
        "plots/main_finetune_top1_vs_budget.png",
        "plots/main_finetune_top1_vs_budget.pdf",
        "plots/mask_ratio_ablation.png",
        "plots/mask_ratio_ablation.pdf",
        "runs/mixmim-s0/config.yaml",
        "runs/mixmim-s0/manifest.json",
        "runs/mixmim-s0/finetune/result.json",
        "runs/mixmim-s0/pretrain/metrics.jsonl",
        "runs/mixmim-s0/pretrain/train.log",
        "runs/mae-s1/finetune/result.json",
        "runs/broken-run/manifest.json",
    }
    assert expected <= names, expected - names
    assert not any(n.endswith(".pth") for n in names)  # checkpoints stay in the run directories
    assert not any(n.startswith("runs/_report") for n in names)
    assert (bundle / "tables.md").read_text(encoding="utf-8") == first_report.markdown


def test_index_readme_describes_files_and_commands(first_report: ReportResult) -> None:
    readme = (first_report.bundle_dir / "README.md").read_text(encoding="utf-8")
    for name in (
        "tables.md",
        "tables.tex",
        "tables.csv",
        "results.csv",
        "plots/pretrain_loss.png",
        "runs/<run>/config.yaml",
        "runs/<run>/<stage>/result.json",
    ):
        assert f"`{name}`" in readme, name
    assert f"`{COMMAND}`" in readme and "`mixmim-bench run tiny`" in readme
    assert "mae-s1" in readme and "unreadable" in readme  # the runs table says what was not counted
    assert "checkpoint-last.pth" in readme  # listed as not copied


def test_zip_matches_folder(first_report: ReportResult) -> None:
    bundle = first_report.bundle_dir
    with zipfile.ZipFile(first_report.zip_path) as zf:
        zipped = {n for n in zf.namelist() if not n.endswith("/")}
    on_disk = {f"{bundle.name}/{p.relative_to(bundle).as_posix()}" for p in bundle.rglob("*") if p.is_file()}
    assert zipped == on_disk


def test_second_report_never_overwrites_the_first(
    first_report: ReportResult, tiny_exp: Path, test_refs: References
) -> None:
    out = first_report.bundle_dir.parent
    before = {p: p.read_bytes() for p in first_report.bundle_dir.rglob("*") if p.is_file()}
    zip_before = first_report.zip_path.read_bytes()
    spec = TableSpec(name="only", title="Only", rows=("method",), columns=(), budget=True)
    second = report_experiment(tiny_exp, [spec], out, formats=["csv"], references=test_refs)
    assert second.bundle_dir.name == "tiny-report-002" and second.zip_path.name == "tiny-report-002.zip"
    assert set(second.tables) == {"csv"}
    assert {p: p.read_bytes() for p in first_report.bundle_dir.rglob("*") if p.is_file()} == before
    assert first_report.zip_path.read_bytes() == zip_before


def test_output_inside_the_experiment_must_not_look_like_a_run(tiny_exp: Path, test_refs: References) -> None:
    with pytest.raises(ReportError, match="would be read as a run"):
        report_experiment(tiny_exp, [], tiny_exp / "report", references=test_refs)


def test_missing_experiment_folder(tmp_path: Path, test_refs: References) -> None:
    with pytest.raises(ReportError, match="no experiment folder"):
        report_experiment(tmp_path / "nope", [], tmp_path / "out", references=test_refs)


def test_empty_experiment_reports_missing(tmp_path: Path, test_refs: References) -> None:
    (tmp_path / "empty").mkdir()
    spec = TableSpec(
        name="main",
        title="Main",
        rows=("method",),
        seeds=(0, 1),
        row_order=("mixmim",),
        columns=(Column("finetune", "top1", reference="mixmim_test_top1"),),
    )
    result = report_experiment(tmp_path / "empty", [spec], tmp_path / "out", references=test_refs)
    assert "| mixmim [1] | missing (n=0 of 2) |    85.1 |           — |" in result.markdown
    assert "seed(s) 0, 1 missing" in result.markdown
