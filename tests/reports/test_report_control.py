"""A control row (random init): margins over it in every column, and no 'missing' note for a stage it never has."""

from __future__ import annotations

from pathlib import Path

from synthetic_runs import stage_result, write_run

from reports.aggregate import build_table
from reports.formats import NOT_APPLICABLE, value_text
from reports.references import References
from reports.results import NOT_PLANNED, read_results
from reports.spec import Column, TableSpec

SPEC = TableSpec(name="smoke", title="t", rows=("method",), labels={"random": "Random init"},
                 columns=(Column("linprobe", "top1", "Probe"), Column("finetune", "top1", "Fine-tune"),
                          Column("pretrain", "loss", "Loss", digits=3)),
                 control="Random init")


def _write(exp: Path, *, random_pretrain_folder: bool = False) -> None:
    def res(value: float) -> dict:
        return stage_result({"top1": value}, epochs=1, effective_batch=8, lr=1e-3)

    write_run(exp, "mixmim-s0", method="mixmim", backbone="b", seed=0,
              results={"pretrain": stage_result({"loss": 0.5}, epochs=1, effective_batch=8, lr=1e-3),
                       "linprobe": res(83.0), "finetune": res(85.0)})
    write_run(exp, "random-s0", method="random", backbone="b", seed=0,
              results={"linprobe": res(78.0), "finetune": res(71.0)})  # no pretrain in its plan
    if random_pretrain_folder:
        (exp / "random-s0" / "pretrain").mkdir()


def test_margins_over_the_control_and_no_note_for_an_unplanned_stage(tmp_path: Path) -> None:
    exp = tmp_path / "smoke"
    _write(exp)
    df = read_results(exp, SPEC.stages)
    assert set(df[(df["run"] == "random-s0") & (df["stage"] == "pretrain")]["status"]) == {NOT_PLANNED}
    table = build_table(df, SPEC, References())
    rows = {row.label: row for row in table.rows}
    mixmim, random = rows["MixMIM"] if "MixMIM" in rows else rows["mixmim"], rows["Random init"]
    assert [value_text(c) for c in mixmim.cells] == ["83.00 [+5.00] (n=1, no CI)", "85.00 [+14.00] (n=1, no CI)",
                                                     "0.500 (n=1, no CI)"]
    assert [value_text(c) for c in random.cells] == ["78.00 (n=1, no CI)", "71.00 (n=1, no CI)", NOT_APPLICABLE]
    assert not any("not started" in note or "not counted" in note for note in table.notes), table.notes


def test_a_planned_stage_that_did_not_run_is_still_reported(tmp_path: Path) -> None:
    exp = tmp_path / "smoke"
    _write(exp)
    write_run(exp, "mae-s0", method="mae", backbone="b", seed=0,
              results={"pretrain": None, "linprobe": stage_result({"top1": 80.0}, epochs=1, effective_batch=8,
                                                                  lr=1e-3)})
    table = build_table(read_results(exp, SPEC.stages), SPEC, References())
    assert any("mae-s0" in note and "not counted" in note for note in table.notes)


def test_the_report_shows_n_a_not_a_note_for_the_control_without_pretraining(tmp_path: Path) -> None:
    """Through report_experiment, as `mixmim-bench report` reads it (no expected stages passed by hand)."""
    from reports.report import report_experiment

    exp = tmp_path / "smoke"
    _write(exp)
    text = report_experiment(exp, [SPEC], references=References()).tables["markdown"]
    random_line = next(line for line in text.splitlines() if line.startswith("| Random init"))
    assert random_line.rstrip(" |").endswith(NOT_APPLICABLE) and "not started" not in text and "[1]" not in text
