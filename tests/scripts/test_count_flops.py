"""``scripts/count_flops.py`` generates the FLOP tables of ``experiments/cost.py``: a part regenerated here
must equal the table (the full count takes minutes of CPU; the one entry counted here takes seconds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from experiments.cost import BACKBONE_GFLOPS, PRETRAIN_GFLOPS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "count_flops.py"


def _script():
    spec = importlib.util.spec_from_file_location("count_flops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_lists_every_entry_and_mixmim_on_the_vit_uses_32px_cells():
    """``startswith("vit")`` missed the ``mixmim_vit_*`` names after the rename (the figure is the same)."""
    entries = {(m, b): extra for m, b, extra in _script().flop_table_entries()}
    assert set(entries) == set(PRETRAIN_GFLOPS) and set(_script().BACKBONES) == set(BACKBONE_GFLOPS)
    assert [key for key, extra in entries.items() if extra] == [("mixmim", "mixmim_vit_base_patch16")]
    assert entries[("mixmim", "mixmim_vit_base_patch16")] == ["method.mask_unit=32"]


def test_regenerated_entries_equal_the_table():
    script = _script()
    part = [e for e in script.flop_table_entries() if e[:2] == ("mixmim", "mixmim_vit_base_patch16")]
    pretrain, backbones = script.count_flop_table(part, ())
    assert pretrain == {("mixmim", "mixmim_vit_base_patch16"): PRETRAIN_GFLOPS[("mixmim", "mixmim_vit_base_patch16")]}
    assert backbones == {}
