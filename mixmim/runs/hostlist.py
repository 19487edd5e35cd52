"""Slurm host lists (``SLURM_JOB_NODELIST``) as the hosts they name, in ``scontrol show hostnames`` order.

Standard library only (``slurm``, ``mixmim.runs.rendezvous`` and the manifest use it; none may load torch here).
"""

from __future__ import annotations

import re

_GROUP_SEPARATOR = re.compile(r",(?![^\[]*\])")  # a comma outside brackets
_BRACKETS = re.compile(r"(\[[^\]]*\])")


def _range_items(spec: str) -> list[str]:
    """``"07-09,12"`` -> ``["07", "08", "09", "12"]`` (zero padding kept)."""
    items: list[str] = []
    for item in spec.split(","):
        low, _, high = item.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())):
            raise ValueError(f"bad range {item!r} in a Slurm host list")
        items += [str(i).zfill(len(low)) for i in range(int(low), int(high or low) + 1)]
    return items


def expand(nodelist: str) -> list[str]:
    """The hosts of a Slurm host list: ``gpu[07-08,10],cpu1`` -> ``[gpu07, gpu08, gpu10, cpu1]``;
    ``rack[1-2]-n[3-4]`` -> ``[rack1-n3, rack1-n4, rack2-n3, rack2-n4]``.

    Raises:
        ValueError: a malformed range (``node[a-b]``).
    """
    hosts: list[str] = []
    for group in _GROUP_SEPARATOR.split(nodelist.strip()):
        names = [""] if group else []
        for part in _BRACKETS.split(group):
            options = _range_items(part[1:-1]) if part.startswith("[") else [part]
            names = [name + option for name in names for option in options]
        hosts += names
    return hosts
