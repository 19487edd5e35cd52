"""Rendered tables: golden markdown and CSV, missing shown as missing, drift flagged, LaTeX compiles."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from reports.cells import TableData
from reports.references import References
from reports.render import build_tables, format_tables, latex_document, render_tables
from reports.results import read_results
from reports.spec import Column, TableSpec

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"  # UPDATE_GOLDEN=1 pytest tests/reports rewrites the files
NO_TEX = "pdflatex not installed (apt-get install texlive-latex-base)"


@pytest.fixture(scope="module")
def results(tiny_exp: Path) -> pd.DataFrame:
    return read_results(tiny_exp)


@pytest.fixture(scope="module")
def tables(results: pd.DataFrame, specs: tuple[TableSpec, ...], test_refs: References) -> list[TableData]:
    return build_tables(results, specs, test_refs)


@pytest.fixture(scope="module")
def cells(tables: list[TableData]) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(format_tables(tables, "csv")), dtype={"row": str})


@pytest.fixture(scope="module")
def markdown(tables: list[TableData]) -> str:
    return format_tables(tables, "markdown")


def _cell(cells: pd.DataFrame, table: str, row: str, column: str) -> dict:
    hit = cells[(cells["table"] == table) & (cells["row"] == row) & (cells["column"] == column)]
    assert len(hit) == 1, cells
    return hit.iloc[0].to_dict()


@pytest.mark.parametrize(("fmt", "name"), [("markdown", "tiny.md"), ("csv", "tiny.csv")])
def test_golden(tables: list[TableData], fmt: str, name: str) -> None:
    text, path = format_tables(tables, fmt), GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run UPDATE_GOLDEN=1 pytest tests/reports"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


def test_failed_and_missing_runs_are_not_counted(cells: pd.DataFrame) -> None:
    mae = _cell(cells, "main", "MAE", "Fine-tune")
    assert (mae["mean"], mae["n"], mae["n_expected"]) == (83.5, 1, 3)  # the corrupt 99.0 is not averaged
    assert "unreadable" in mae["notes"] and "unfinished" in mae["notes"]
    mixmim = _cell(cells, "main", "MixMIM", "Fine-tune")
    assert (mixmim["n"], mixmim["n_expected"]) == (2, 3)
    assert "seed(s) 2 missing" in mixmim["notes"]
    assert cells["notes"].str.contains("run directory 'broken-run' not counted").any()


def test_missing_reference_is_missing_never_zero(cells: pd.DataFrame, markdown: str) -> None:
    for row in ("0.5", "0.75"):  # to transcribe (null) and no entry at all
        cell = _cell(cells, "mask_ratio", row, "Top-1")
        assert pd.isna(cell["paper"]) and pd.isna(cell["delta"])
    ablation = markdown.split("### Mask ratio")[1].split("###")[0]
    assert ablation.count("| missing |") == 2 and "0.00" not in ablation
    assert "not transcribed yet" in ablation and "no reference entry 'ablation_mask_ratio_0.75_top1'" in ablation


def test_protocol_drift_is_flagged(
    cells: pd.DataFrame, markdown: str, results: pd.DataFrame, test_refs: References
) -> None:
    assert (
        _cell(cells, "main", "MixMIM", "Fine-tune")["drift"]
        == "pretrain (test_pretrain): epochs 300 [1 of 2 runs] vs 600"
    )
    assert "85.10 ± 1.27 (n=2 of 3)†" in markdown
    only_s0 = TableSpec(
        name="s0",
        title="s0",
        rows=("method",),
        seeds=(0,),
        filters={"method": "mixmim", "setting.mask_ratio": 0.5},
        columns=(Column("finetune", "top1", reference="mixmim_test_top1"),),
    )
    (table,) = build_tables(results, [only_s0], test_refs)
    assert table.rows[0].cells[0].drift == []  # same recipe as the reference: no flag


def test_detection_engines_never_share_a_column(tables: list[TableData]) -> None:
    (coco,) = [t for t in tables if t.spec.name == "coco"]
    assert [c.title for c in coco.columns] == ["AP box [detectron2]", "AP box [torchvision]"]
    assert [c.mean for c in coco.rows[0].cells] == [51.0, 50.0]
    assert coco.rows[0].cells[1].drift == ["detection engine torchvision vs detectron2 (reference)"]


def test_latex_is_ascii_and_escaped(tables: list[TableData]) -> None:
    tex = format_tables(tables, "latex")
    assert tex.isascii()
    assert r"85.10 $\pm$ 1.27 (n=2 of 3)$^{\dagger,2}$" in tex and r"ablation\_mask\_ratio" in tex


def test_html_fragment(tables: list[TableData]) -> None:
    html = format_tables(tables, "html")
    assert "<table>" in html and "<sup>&dagger;,2</sup>" in html and "<h3>Mask ratio</h3>" in html


def test_render_tables_one_call(
    results: pd.DataFrame, specs: tuple[TableSpec, ...], test_refs: References, markdown: str
) -> None:
    assert render_tables(results, specs, test_refs, "markdown") == markdown
    with pytest.raises(ValueError, match="unknown format 'docx'"):
        render_tables(results, specs, test_refs, "docx")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason=NO_TEX)
def test_latex_compiles(tables: list[TableData], tmp_path: Path) -> None:
    (tmp_path / "tables.tex").write_text(format_tables(tables, "latex"), encoding="ascii")
    (tmp_path / "doc.tex").write_text(latex_document(r"\input{tables.tex}"), encoding="ascii")
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
