"""The format-free content of a rendered table: cells with statistics, references and numbered notes.

``reports.aggregate.build_table`` fills these from results; ``reports.render`` turns them into markdown,
LaTeX, HTML or CSV. Keeping the numbers here (not strings) is what lets every format agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reports.references import NoiseFloor, Reference
from reports.spec import Column, TableSpec
from reports.verdicts import Verdict


@dataclass
class Cell:
    """One reproduced number: mean, std and 95% interval half-width (``ci``) over ``n`` of ``n_expected`` runs,
    and its reference (``reports.stats``: Student t over seeds; ``ci`` None when n < 2).

    ``has_reference_column`` is True when the table shows a paper/delta column for this cell's column;
    ``reference`` is None there when the key is unknown, and ``reference.value`` is None while the
    number is still to be transcribed: both render as "missing", never as zero.
    """

    mean: float | None = None
    std: float | None = None
    ci: float | None = None  # half-width of the 95% interval (reports.stats.mean_interval)
    n: int = 0
    n_expected: int = 0
    digits: int = 2
    has_reference_column: bool = False
    reference_key: str | None = None
    reference: Reference | None = None
    floor: NoiseFloor | None = None
    notes: list[int] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    not_applicable: bool = False  # no run of the row has the column's stage (random init: no pretrain)
    margin: float | None = None  # mean minus the control row's (TableSpec.control) in the same column
    signed: bool = False  # a difference (kind ``differences``): shown with its sign, as is its paper value

    @property
    def paper(self) -> float | None:
        """The reference value, or None when there is none (missing or to transcribe)."""
        return self.reference.value if self.reference is not None else None

    @property
    def delta(self) -> float | None:
        """Reproduced minus paper, or None when either is missing."""
        return None if self.mean is None or self.paper is None else self.mean - self.paper


@dataclass(frozen=True)
class TableColumn:
    """A displayed column: a spec column (split by detection engine) or a budget column."""

    title: str
    column: Column | None = None
    engine: str | None = None
    budget_field: str | None = None  # gpu_hours | gflops | images_per_s

    @property
    def has_reference(self) -> bool:
        return self.column is not None and self.column.reference is not None


@dataclass
class TableRow:
    """One row: its label (and the displayed part per row key), key values, one cell per column."""

    label: str
    parts: list[str]
    key: dict[str, Any]
    cells: list[Cell]
    notes: list[int] = field(default_factory=list)


@dataclass
class TableData:
    """A table ready to render: columns, rows, numbered notes and the sources of every reference used."""

    spec: TableSpec
    columns: list[TableColumn]
    rows: list[TableRow]
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    legend: str = ""  # how to read a cell (statistics, n), printed under the caption
    verdicts: list[Verdict] = field(default_factory=list)  # the table's findings, decided on its results


class NoteBook:
    """Numbered footnotes; the same text gets the same number."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, text: str) -> int:
        """The 1-based number of ``text``, added if new."""
        if text not in self._index:
            self.texts.append(text)
            self._index[text] = len(self.texts)
        return self._index[text]
