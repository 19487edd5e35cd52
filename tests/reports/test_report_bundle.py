"""report_experiment and the review bundle: contents, index, plots, replaced by the next report unless kept."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from baselines.registry import pretrain_losses
from reports.page import PageContext
from reports.references import References
from reports.report import ReportError, ReportResult, report_experiment
from reports.spec import Column, TableSpec

COMMAND = "mixmim-bench report tiny --output OUT"


@pytest.fixture(scope="module")
def first_report(
    tiny_exp: Path, tmp_path_factory: pytest.TempPathFactory, specs: tuple[TableSpec, ...], test_refs: References
) -> ReportResult:
    out = tmp_path_factory.mktemp("report")
    context = PageContext(pretrain_losses=pretrain_losses())  # as the CLI passes them: the method cards' loss kinds
    return report_experiment(tiny_exp, specs, out, references=test_refs, command=COMMAND, context=context)


def test_result_holds_tables_and_paths(first_report: ReportResult) -> None:
    assert first_report.markdown.startswith("### ImageNet-1K (tiny)")
    assert set(first_report.tables) == {"markdown", "latex", "csv", "html"}
    assert first_report.bundle_dir.name == "tiny-report"
    assert first_report.page == first_report.bundle_dir / "report.html"
    assert first_report.zip_path.is_file() and first_report.zip_path in first_report.files


def test_bundle_contents(first_report: ReportResult) -> None:
    bundle = first_report.bundle_dir
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    expected = {
        "report.html",
        "README.md",
        "tables.md",
        "tables.tex",
        "tables.csv",
        "tables.html",
        "tables_standalone.tex",
        "results.csv",
        "curves.csv",
        "references/references.yaml",
        "plots/loss_pretrain-pixel-mse.svg",
        "plots/main_finetune_top1_vs_budget.svg",
        "plots/mask_ratio_ablation.svg",
        "runs/configs.yaml",
        "runs/manifests.json",
    }
    assert expected <= names, expected - names
    assert not any(n.endswith((".pth", ".log", ".pdf")) for n in names)  # by default no checkpoint, log, PDF
    assert not any(n.startswith("runs/mixmim-s0") for n in names)  # run folders: only with full=True
    manifests = json.loads((bundle / "runs/manifests.json").read_text(encoding="utf-8"))
    assert manifests["mixmim-s0"]["method"] == "mixmim" and manifests["broken-run"] is None
    configs = list(yaml.safe_load_all((bundle / "runs/configs.yaml").read_text(encoding="utf-8")))
    assert len(configs) == len(manifests) and configs[list(manifests).index("mixmim-s0")]["name"] == "mixmim-s0"
    assert (bundle / "tables.md").read_text(encoding="utf-8") == first_report.markdown


def test_index_readme_describes_files_and_commands(first_report: ReportResult) -> None:
    readme = (first_report.bundle_dir / "README.md").read_text(encoding="utf-8")
    for name in (
        "tables.md",
        "tables.tex",
        "tables.csv",
        "results.csv",
        "report.html",
        "plots/loss_pretrain-pixel-mse.svg",
        "runs/configs.yaml",
        "runs/manifests.json",
    ):
        assert f"`{name}`" in readme, name
    assert f"`{COMMAND}`" in readme and "`runs/<run>/config.yaml`" not in readme
    assert "mae-s1" in readme and "unreadable" in readme  # the runs table says what was not counted


def test_zip_matches_folder(first_report: ReportResult) -> None:
    bundle = first_report.bundle_dir
    with zipfile.ZipFile(first_report.zip_path) as zf:
        zipped = {n for n in zf.namelist() if not n.endswith("/")}
    on_disk = {f"{bundle.name}/{p.relative_to(bundle).as_posix()}" for p in bundle.rglob("*") if p.is_file()}
    assert zipped == on_disk


def test_full_bundle_copies_run_files(tiny_exp: Path, specs, test_refs: References, tmp_path: Path) -> None:
    full = report_experiment(tiny_exp, specs, tmp_path, references=test_refs, command=COMMAND, full=True)
    names = {p.relative_to(full.bundle_dir).as_posix() for p in full.bundle_dir.rglob("*") if p.is_file()}
    assert {"runs/mixmim-s0/config.yaml", "runs/mixmim-s0/finetune/result.json", "runs/mixmim-s0/pretrain/train.log",
            "runs/mae-s1/finetune/result.json", "runs/broken-run/manifest.json",
            "plots/mask_ratio_ablation.pdf"} <= names
    assert not any(n.endswith(".pth") for n in names)  # checkpoints stay in the run directories
    readme = (full.bundle_dir / "README.md").read_text(encoding="utf-8")
    assert "`runs/<run>/config.yaml`" in readme and "checkpoint-last.pth" in readme  # listed as not copied


def test_next_report_replaces_the_bundle_unless_kept(tiny_exp: Path, test_refs: References, tmp_path: Path) -> None:
    spec = TableSpec(name="only", title="Only", rows=("method",), columns=(), budget=True)
    first = report_experiment(tiny_exp, [spec], tmp_path, references=test_refs)
    (first.bundle_dir / "stale.txt").write_text("from the first report")
    second = report_experiment(tiny_exp, [spec], tmp_path, formats=["csv"], references=test_refs)
    assert second.bundle_dir == first.bundle_dir and set(second.tables) == {"csv"}
    assert not (second.bundle_dir / "stale.txt").exists()  # replaced, not merged
    with zipfile.ZipFile(second.zip_path) as zf:
        assert "tiny-report/stale.txt" not in zf.namelist() and "tiny-report/report.html" in zf.namelist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-report", "tiny-report.zip"]  # nothing piles up
    before = {p: p.read_bytes() for p in second.bundle_dir.rglob("*") if p.is_file()}
    kept = [report_experiment(tiny_exp, [spec], tmp_path, references=test_refs, keep=True) for _ in range(2)]
    assert [k.bundle_dir.name for k in kept] == ["tiny-report-001", "tiny-report-002"]
    assert [k.zip_path.name for k in kept] == ["tiny-report-001.zip", "tiny-report-002.zip"]
    assert {p: p.read_bytes() for p in second.bundle_dir.rglob("*") if p.is_file()} == before  # kept untouched


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
