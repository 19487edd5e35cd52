"""Table specs: how an experiment declares the paper-style tables its results fill.

Model-free on purpose: a spec names row keys (columns of the results DataFrame) and cell columns
(stage, metric, reference key). Example, the main MixMIM table::

    TableSpec(
        name="main", title="ImageNet-1K, MixMIM-B",
        rows=("method",),
        columns=(
            Column("linprobe", "top1", "Linear probe"),
            Column("knn", "top1", "kNN"),
            Column("finetune", "top1", "Fine-tune", reference="mixmim_b_600ep_top1"),
        ),
    )

and an ablation, one row per ablated value with a per-row reference (template filled from the row)::

    TableSpec(name="mask_ratio", title="Mask ratio", rows=("setting.mask_ratio",),
              columns=(Column("finetune", "top1", "Top-1",
                              reference="mixmim_ablation_mask_ratio_{setting.mask_ratio}_top1"),))
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reports.verdicts import Finding

TABLE_KINDS = ("values", "differences")
_TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Column:
    """One reproduced number per row: ``metric`` of ``stage`` (e.g. ``finetune``/``top1``).

    Attributes:
        stage: stage folder name (``pretrain``, ``finetune``, ``linprobe``, ``knn``, ``coco``).
        metric: key in the stage's ``result.json`` ``metrics``.
        header: column header; default ``"<stage> <metric>"``.
        reference: reference key (``reports/references/*.yaml``), a template filled from the row's key
            values (``"{method}_b_600ep_top1"``), or a mapping row label -> key. None: no paper column.
        digits: decimals shown.
        scale: multiply stored values by this before display (e.g. 100 for fractions -> percent).
    """

    stage: str
    metric: str
    header: str = ""
    reference: str | Mapping[str, str] | None = None
    digits: int = 2
    scale: float = 1.0

    @property
    def title(self) -> str:
        """The header shown in the table."""
        return self.header or f"{self.stage} {self.metric}"

    def reference_key(self, row: Mapping[str, Any], label: str) -> str | None:
        """The reference key for one row (``row``: row-key column -> value, ``label``: the row's label)."""
        if self.reference is None:
            return None
        if isinstance(self.reference, Mapping):
            return self.reference.get(label)
        return _TEMPLATE_FIELD.sub(lambda m: _as_key_part(row.get(m.group(1), m.group(0))), self.reference)


def _as_key_part(value: Any) -> str:
    """Booleans (Python or numpy) as ``true``/``false``, as YAML writes them; everything else ``str``."""
    return str(value).lower() if isinstance(value, (bool, np.bool_)) else str(value)


@dataclass(frozen=True)
class TableSpec:
    """A paper-style table: rows from run identity, columns from stage metrics, compared with references.

    Attributes:
        name: file-safe identifier (plots and per-table files use it).
        title: shown above the table.
        columns: the metric columns, in paper order.
        rows: results columns that form a row (``method``, ``backbone``, ``setting.mask_ratio``, ...).
        caption: shown below the table.
        seeds: seeds to aggregate; None = every seed found. Declared seeds without a result are reported
            as missing (n shows "2/3").
        filters: keep only runs whose column equals the value (``{"backbone": "mixmim_b"}``); a list or
            tuple value means "one of"; None means "not set" (the run has no such setting key).
        row_order: row labels in paper order; declared rows without runs show as missing; other rows follow.
        labels: display names for row-key values (``{"mixmim": "MixMIM"}``).
        budget: add GPU-hours, GFLOPs and throughput columns.
        budget_stages: stages whose GPU-hours are summed per run for the budget column.
        control: label of a control row (``"Random init"``); every other row's value shows its margin over
            it in the same column, ``84.10 [+5.20] (n=1, no CI)``.
        kind: ``values`` (each row's mean and interval) or ``differences`` (each row's paired difference to its
            baseline row over seeds, with its interval, and the paper's difference beside it).
        baseline: for ``differences``: row key -> value of the baseline arm (``{"setting.mask_ratio": 0.5}``);
            a row's baseline is the row with the same other key values. The baseline rows themselves are not shown.
        findings: the paper's claims about the rows (:class:`reports.verdicts.Finding`); the report prints a
            verdict for each under the table.
        data_texts: ``data.dataset`` -> (title, caption) for a table whose title and caption name its data: the
            report uses the pair of the one dataset its runs recorded (``--set data.dataset=...``), see
            :meth:`for_data`.
    """

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[str, ...] = ("method",)
    caption: str = ""
    seeds: tuple[int, ...] | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    row_order: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    budget: bool = False
    budget_stages: tuple[str, ...] = ("pretrain",)
    control: str | None = None
    kind: str = "values"
    baseline: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    data_texts: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def for_data(self, datasets: set[str]) -> TableSpec:
        """This spec with the title and caption of ``data_texts`` for the one dataset in ``datasets`` (the runs'
        recorded ``data.dataset``); unchanged when it has none for it, or the runs read several."""
        if len(datasets) != 1 or (text := self.data_texts.get(next(iter(datasets)))) is None:
            return self
        return dataclasses.replace(self, title=text[0], caption=text[1])

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"TableSpec.name {self.name!r} must be file-safe (letters, digits, _ . -)")
        if not self.rows:
            raise ValueError(f"TableSpec '{self.name}' needs at least one row key (e.g. rows=('method',))")
        if not self.columns and not self.budget:
            raise ValueError(f"TableSpec '{self.name}' has no columns and no budget columns")
        if self.kind not in TABLE_KINDS:
            raise ValueError(f"TableSpec '{self.name}': kind {self.kind!r} is not one of {TABLE_KINDS}")
        if self.kind == "differences" and (not self.baseline or set(self.baseline) - set(self.rows)):
            raise ValueError(f"TableSpec '{self.name}' of kind 'differences' needs a baseline naming row keys of "
                             f"{self.rows}, e.g. baseline={{'{self.rows[0]}': VALUE}}")
        metrics = {(c.stage, c.metric) for c in self.columns}
        for finding in self.findings:
            if (finding.stage, finding.metric) not in metrics:
                raise ValueError(f"TableSpec '{self.name}': finding '{finding.claim}' reads {finding.stage} "
                                 f"{finding.metric}, which is not a column of the table")

    @property
    def stages(self) -> tuple[str, ...]:
        """Every stage the table reads (the reader reports these as missing where absent)."""
        names = [c.stage for c in self.columns] + (list(self.budget_stages) if self.budget else [])
        return tuple(dict.fromkeys(names))

    def row_parts(self, values: Mapping[str, Any]) -> list[str]:
        """The displayed text of each row key (after ``labels``); missing values show as '-'."""
        parts = []
        for key in self.rows:
            value = values.get(key)
            text = "-" if value is None or (isinstance(value, float) and value != value) else _as_key_part(value)
            parts.append(self.labels.get(text, text))
        return parts

    def row_label(self, values: Mapping[str, Any]) -> str:
        """The label of a row: its displayed key values joined by ' / ' (what ``row_order`` lists)."""
        return " / ".join(self.row_parts(values))

    def baseline_key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        """The key values of the baseline row of the row with ``key`` (kind ``differences``)."""
        return {**key, **self.baseline}

    def is_baseline(self, key: Mapping[str, Any]) -> bool:
        """Whether the row with ``key`` is a baseline row (its key values match ``baseline``)."""
        matches = (_as_key_part(key.get(k)) == _as_key_part(v) for k, v in self.baseline.items())
        return bool(self.baseline) and all(matches)

    @property
    def row_headers(self) -> list[str]:
        """Header of each row-key column (``setting.mask_ratio`` -> ``mask_ratio``)."""
        return [key.removeprefix("setting.") for key in self.rows]
