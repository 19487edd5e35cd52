"""Three ranks on the CPU (gloo): a pre-training stopped and resumed ends bitwise equal to the uninterrupted one.

With 3 or more ranks the all-reduce's sum of one gradient element depends on where the element sits in DDP's
bucket (a sum of 2 does not), so the buckets must be the same at every step of every process, whenever it
started (:func:`mixmim.engine.distributed.wrap_ddp`). Without that, the step after the resume was summed in
DDP's first-step layout (one bucket) and the weights left the uninterrupted run's by a few roundings. The
interruption here is a new trainer (a new DDP wrapper and reducer) in the same processes, which is what a new
process also builds; the process-level SIGKILL of a 2-rank run is in ``test_two_ranks.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rank_checks import resume_checks

from slurm.local_ranks import launch_local_ranks

STEPS = 3  # stopped after 2: DDP has regrouped its buckets after step 1 of the uninterrupted run


@pytest.mark.usefixtures("one_thread")
def test_three_ranks_resumed_pretraining_is_bitwise_the_uninterrupted_one(tmp_path: Path):
    figures = launch_local_ranks(resume_checks, (str(tmp_path), STEPS), 3, "three-rank-resume")[0]
    assert figures["world_size"] == 3 and figures["resumed_from"] == STEPS - 1
    uninterrupted = figures["uninterrupted"]
    for name in ("again", "resumed"):  # the collectives are deterministic; the resume does not change the sums
        other = figures[name]
        assert uninterrupted.keys() == other.keys()
        differ = [key for key, value in uninterrupted.items() if not torch.equal(value, other[key])]
        assert not differ, f"{name}: {len(differ)} of {len(uninterrupted)} tensors differ, e.g. {differ[:3]}"
