"""Loss kinds of the review page's curves: given by the caller (the method cards), never guessed by reports/."""

from __future__ import annotations

import pandas as pd

from reports.curves import loss_kind, panels


def _curves(*methods: str) -> pd.DataFrame:
    return pd.DataFrame({"method": list(methods), "step": range(len(methods)), "value": [0.5] * len(methods)})


def test_methods_of_one_given_loss_kind_share_a_panel_and_unknown_ones_get_their_own():
    losses = {"mixmim": "pixel MSE", "mae": "pixel MSE", "beit": "visual-token cross-entropy"}
    got = panels({"pretrain": _curves("mixmim", "mae", "beit", "ijepa")}, losses)
    assert {p.kind: sorted(p.curves["method"]) for p in got} == {
        "pixel MSE": ["mae", "mixmim"], "visual-token cross-entropy": ["beit"], "ijepa pretrain loss": ["ijepa"]}
    assert len(panels({"pretrain": _curves("mixmim", "mae")})) == 2  # no kinds given: nothing shares an axis
    assert loss_kind("finetune", "mae", {}) == "classification cross-entropy"
