"""``reports.report.gc_paused``: the cyclic collector is off inside the block and as it was after it."""

from __future__ import annotations

import gc

import pytest

from reports.report import gc_paused


@pytest.fixture
def gc_state():
    """Restore the collector's state whatever a test does to it."""
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_gc_paused_turns_collection_off_then_back_on(gc_state):
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_gc_paused_restores_after_an_error(gc_state):
    gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_gc_paused_leaves_a_disabled_collector_disabled(gc_state):
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
