"""A run cut short of its planned schedule (``max_steps`` or a budget) is marked in its result and in every table
cell it enters, with or without a reference."""

from __future__ import annotations

from pathlib import Path

from synthetic_runs import stage_result, write_run

from mixmim.runs.rundir import is_truncated, read_result, write_result
from reports.aggregate import build_table
from reports.formats import value_text
from reports.references import References
from reports.results import read_results
from reports.spec import Column, TableSpec

SPEC = TableSpec(name="t", title="t", rows=("method",), columns=(Column("finetune", "top1", "Fine-tune"),))


def test_a_result_below_its_planned_epochs_is_marked_truncated(tmp_path: Path) -> None:
    write_result(tmp_path, "pretrain", {"status": "done", "epochs": 2 / 5004, "epochs_planned": 300})
    write_result(tmp_path, "finetune", {"status": "done", "epochs": 100.0, "epochs_planned": 100})
    assert read_result(tmp_path, "pretrain")["truncated"] is True
    assert "truncated" not in read_result(tmp_path, "finetune")
    assert not is_truncated({"epochs": 0})  # nothing planned recorded: nothing to compare


def _run(exp: Path, name: str, pretrain_epochs: float) -> None:
    write_run(exp, name, method="mixmim", backbone="b", seed=int(name[-1]),
              results={"pretrain": stage_result({"loss": 0.5}, epochs=pretrain_epochs, effective_batch=8, lr=1e-3,
                                                epochs_planned=300),
                       "finetune": stage_result({"top1": 80.0}, epochs=100, effective_batch=8, lr=1e-3,
                                                epochs_planned=100)})  # fmt: skip


def test_a_cell_counting_a_truncated_upstream_stage_carries_the_mark(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _run(exp, "mixmim-s0", 300)
    table = build_table(read_results(exp, SPEC.stages), SPEC, References())
    assert table.rows[0].cells[0].drift == [] and "†" not in value_text(table.rows[0].cells[0])
    _run(exp, "mixmim-s1", 0.0004)  # 2 steps of a 300-epoch pre-training, then a full fine-tune
    table = build_table(read_results(exp, SPEC.stages), SPEC, References())
    cell = table.rows[0].cells[0]
    assert cell.drift == ["schedule cut short (max_steps or a budget): pretrain of 1 of 2 runs (0.0004 of 300 epochs)"]
    assert any("schedule cut short" in note for note in table.notes)


def test_an_own_run_names_the_truncated_pretraining_it_inherits(tmp_path: Path) -> None:
    """fixed-encoder's own protocol: the run fine-tunes its shared sibling's encoder (``init=run:<base>``), so a
    sibling pre-training cut short is named in the own run's cells, also when only the own runs are reported."""
    from mixmim.runs.rundir import update_manifest

    exp = tmp_path / "exp"
    write_run(exp, "mae-b-s0", method="mae", backbone="b", seed=0,
              results={"pretrain": stage_result({"loss": 0.5}, epochs=0.0004, effective_batch=8, lr=1e-3,
                                                epochs_planned=300)})  # fmt: skip
    own = write_run(exp, "mae-b-finetuneown-s0", method="mae", backbone="b", seed=0, setting={"finetune": "own"},
                    results={"finetune": stage_result({"top1": 80.0}, epochs=100, effective_batch=8, lr=1e-3,
                                                      epochs_planned=100)})  # fmt: skip
    update_manifest(own, {"init": "run:mae-b"})
    spec = TableSpec(name="own", title="own", rows=("method",), columns=(Column("finetune", "top1", "Fine-tune"),),
                     filters={"setting.finetune": "own"})
    every = read_results(exp, spec.stages)
    expected = ["schedule cut short (max_steps or a budget): pretrain inherited from mae-b-s0 of 1 of 1 runs "
                "(0.0004 of 300 epochs)"]
    assert build_table(every, spec, References()).rows[0].cells[0].drift == expected
    only = every[every["run"] == "mae-b-finetuneown-s0"]  # --only / the own protocol's bundle
    assert build_table(only, spec, References(), every).rows[0].cells[0].drift == expected
    assert build_table(only, spec, References()).rows[0].cells[0].drift == []  # nothing to follow it to
