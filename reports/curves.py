"""Training curves by loss kind: which losses may share an axis, and the per-step statistics over seeds.

Different losses never share an axis: BEiT's visual-token cross-entropy (about 3 at the start) next to a
pixel loss (about 0.6) would flatten both. Each (stage, loss kind) gets its own panel. What each method's
pre-training loss is comes from the caller (``PageContext.pretrain_losses``: the CLI passes the method cards'
``loss``, as reports/ knows no method); a method whose loss kind is not given gets a panel of its own, so an
unknown loss is never mixed with a known one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

CLASSIFICATION_STAGES = ("linprobe", "finetune")  # mixmim/evaluate: cross-entropy against the labels
CURVE_STAGES = ("tokenizer", "pretrain", "linprobe", "finetune", "coco")  # stages that log a training loss
MAX_POINTS = 240  # steps per line drawn (evenly thinned): a page stays small for long runs


@dataclass(frozen=True)
class Panel:
    """One axis: a stage and a loss kind, and the curves that share it (columns of :func:`read_curves`)."""

    stage: str
    kind: str
    curves: pd.DataFrame

    @property
    def slug(self) -> str:
        """A file- and anchor-safe name, e.g. ``pretrain-pixel-mse``."""
        text = f"{self.stage}-{self.kind}".lower()
        return "".join(c if c.isalnum() else "-" for c in text).strip("-").replace("--", "-")


def loss_kind(stage: str, method: object, pretrain_losses: Mapping[str, str]) -> str:
    """The loss a (stage, method) logs as ``loss`` (``pretrain_losses``: method -> its pre-training loss kind);
    unknown pairs get a kind naming the method."""
    if stage in CLASSIFICATION_STAGES:
        return "classification cross-entropy"
    if stage == "pretrain" and method in pretrain_losses:
        return pretrain_losses[str(method)]
    if stage == "coco":
        return "detection loss (sum of terms)"
    return f"{method} {stage} loss"


def panels(curves_by_stage: dict[str, pd.DataFrame], pretrain_losses: Mapping[str, str] | None = None) -> list[Panel]:
    """Split each stage's curves (``reports.results.read_curves``) into one panel per loss kind
    (``pretrain_losses``: method -> its pre-training loss kind, :func:`loss_kind`)."""
    out = []
    for stage, curves in curves_by_stage.items():
        if curves.empty:
            continue
        kinds = curves["method"].map({m: loss_kind(stage, m, pretrain_losses or {}) for m in curves["method"].unique()})
        for kind in sorted(kinds.unique()):
            out.append(Panel(stage, kind, curves[kinds == kind]))
    return out


def group_label(method: object, backbone: object, setting: object) -> str:
    return " / ".join(str(p) for p in (method, backbone, setting) if isinstance(p, str) and p)


def seed_bands(curves: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame, int]]:
    """Per method / backbone / setting: (label, per-step frame with mean, lo, hi, n, number of seeds).

    ``lo``/``hi`` are the minimum and maximum over seeds at each step (a band once there are two seeds);
    steps are thinned to at most :data:`MAX_POINTS`.
    """
    for (method, backbone, setting), group in curves.groupby(["method", "backbone", "setting"], dropna=False,
                                                              sort=True):
        stats = group.groupby("step")["value"].agg(mean="mean", lo="min", hi="max", n="count").reset_index()
        if len(stats) > MAX_POINTS:
            keep = sorted({round(i * (len(stats) - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})
            stats = stats.iloc[keep]
        yield group_label(method, backbone, setting), stats, int(group["run"].nunique())
