"""Slurm host lists expanded as ``scontrol show hostnames`` lists them."""

from __future__ import annotations

import pytest

from mixmim.runs.hostlist import expand


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("node5", ["node5"]),
    ("mixmim-node[1-2]", ["mixmim-node1", "mixmim-node2"]),
    ("gpu[07-08,10],cpu1", ["gpu07", "gpu08", "gpu10", "cpu1"]),
    ("rack[1-2]-n[3-4]", ["rack1-n3", "rack1-n4", "rack2-n3", "rack2-n4"]),
    ("a,b[9-11]", ["a", "b9", "b10", "b11"]),
    ("", []),
])  # fmt: skip
def test_expand(nodelist: str, hosts: list[str]) -> None:
    assert expand(nodelist) == hosts


def test_a_malformed_range_is_named() -> None:
    with pytest.raises(ValueError, match="bad range 'a-b'"):
        expand("node[a-b]")
