"""The differences table kind (paired over seeds, the paper's difference beside it) and verdict lines, in every
format."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from synthetic_runs import stage_result, write_run

from reports.references import Reference, References
from reports.render import FORMATS, build_tables, format_tables
from reports.results import read_results
from reports.spec import Column, TableSpec
from reports.verdicts import Finding

T_975_2 = 4.302652729911275
TOP1 = Column("finetune", "top1", "Top-1", reference="ratio_{setting.mask_ratio}")
VALUES = TableSpec(name="ratio", title="Mask ratio", rows=("setting.mask_ratio",), columns=(TOP1,))
DIFFERENCES = TableSpec(name="ratio_diff", title="Mask ratio: differences", kind="differences",
                        rows=("setting.mask_ratio",), columns=(TOP1,), baseline={"setting.mask_ratio": 0.5},
                        findings=(Finding.best("0.5 is best", "test paper", "0.5", ["0.25", "0.75"]),))
# seed -> top-1; 0.75 misses seed 2 (its pairs: seeds 0 and 1 only)
TOP1S = {0.5: [85.0, 85.2, 85.1], 0.25: [84.0, 84.1, 84.4], 0.75: [84.9, 85.0]}
REFS = References(values={"ratio_0.5": Reference("ratio_0.5", 85.0, "paper T1", unit="%"),
                          "ratio_0.25": Reference("ratio_0.25", 84.2, "paper T1", unit="%"),
                          "ratio_0.75": Reference("ratio_0.75", None, "paper T1, to transcribe")})


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    exp = tmp_path_factory.mktemp("diff") / "exp"
    for ratio, values in TOP1S.items():
        for seed, value in enumerate(values):
            write_run(exp, f"r{ratio}-s{seed}", method="mixmim", backbone="b", seed=seed,
                      setting={"mask_ratio": ratio}, results={"finetune": stage_result({"top1": value}, 1, 8, 1e-3)})
    return read_results(exp, ("finetune",))


def test_paired_differences_by_hand(results: pd.DataFrame) -> None:
    values, diffs = build_tables(results, [VALUES, DIFFERENCES], REFS)
    first = values.rows[0].cells[0]  # 0.25: 84.0, 84.1, 84.4: mean 84.1667, sd 0.2082
    assert first.mean == pytest.approx(84.1667, abs=1e-4)
    assert first.ci == pytest.approx(T_975_2 * 0.2081666 / math.sqrt(3), abs=1e-5)
    rows = {row.label: row.cells[0] for row in diffs.rows}
    assert set(rows) == {"0.25", "0.75"}  # the baseline row is not shown
    low = rows["0.25"]  # per-seed 84.0-85.0, 84.1-85.2, 84.4-85.1 = -1.0, -1.1, -0.7
    assert (low.mean, low.n, low.n_expected) == (pytest.approx(-14 / 15), 3, 3)
    assert low.ci == pytest.approx(T_975_2 * math.sqrt(((-1 + 14 / 15) ** 2 + (-1.1 + 14 / 15) ** 2
                                                        + (-0.7 + 14 / 15) ** 2) / 2) / math.sqrt(3))
    assert low.paper == pytest.approx(-0.8) and low.delta == pytest.approx(-14 / 15 + 0.8)
    high = rows["0.75"]  # seeds 0, 1 only: -0.1, -0.2
    assert (high.mean, high.n, high.n_expected) == (pytest.approx(-0.15), 2, 3)
    assert high.paper is None
    notes = " ".join(diffs.notes)
    assert "seed(s) 2 have a result in only one of '0.75' and '0.5'" in notes
    assert "ratio_0.75" in notes and "not transcribed" in notes
    (verdict,) = diffs.verdicts
    assert verdict.state == "inconclusive" and verdict.decided_by.worse == "0.75"  # 0.25 holds, 0.75 does not


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_shows_intervals_differences_and_verdicts(results: pd.DataFrame, fmt: str) -> None:
    text = format_tables(build_tables(results, [VALUES, DIFFERENCES], REFS), fmt)
    verdict = "inconclusive: 0.5 is best (finetune top1; decided by 0.5 - 0.75 = +0.15"
    expected = {
        "markdown": ["-0.93 ± 0.52 (n=3)", "-0.15 ± 0.64 (n=2 of 3)", "|    -0.8 |", "Verdict (95%): " + verdict,
                     "84.17 ± 0.52 (n=3)", "95% confidence interval"],
        "latex": [r"-0.93 $\pm$ 0.52 (n=3)", r"Verdict (95\%): " + verdict, r"95\% confidence interval"],
        "html": ["-0.93 ± 0.52 (n=3)", "<li>Verdict (95%): " + verdict],
        "csv": [",verdict,finetune,top1,", ",inconclusive,0.5 is best", "ci95_low"],
    }[fmt]
    for piece in expected:
        assert piece in text, f"{piece!r} not in the {fmt} output"


def test_a_differences_table_needs_a_baseline_and_findings_need_their_column() -> None:
    with pytest.raises(ValueError, match="needs a baseline"):
        TableSpec(name="d", title="d", kind="differences", rows=("method",), columns=(TOP1,))
    with pytest.raises(ValueError, match="not a column"):
        TableSpec(name="d", title="d", rows=("method",), columns=(TOP1,),
                  findings=(Finding.best("x", "src", "a", ["b"], stage="linprobe"),))
