"""Render tables as markdown, LaTeX, HTML (paper layout) or CSV (tidy, one line per cell).

``render_tables(df, specs, references, fmt)`` is the one-call entry; ``build_tables`` + ``format_tables``
let a caller aggregate once and write several formats (the review bundle does).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from tabulate import tabulate

from reports.aggregate import build_table
from reports.cells import TableData
from reports.differences import build_differences
from reports.formats import STYLES, Style, delta_text, paper_text, render_label, render_value
from reports.references import References
from reports.spec import TableSpec
from reports.stats import LEVEL
from reports.verdicts import Verdict

FORMATS = ("markdown", "latex", "csv", "html")
EXTENSIONS = {"markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}
_TABULATE_FORMATS = {"markdown": "github", "latex": "latex_raw", "html": "unsafehtml"}


def build_tables(df: pd.DataFrame, specs: Sequence[TableSpec], references: References,
                 every: pd.DataFrame | None = None) -> list[TableData]:
    """Aggregate every spec (format-free): a values table, or a differences table (``spec.kind``). ``every``: the
    rows of every run read when ``df`` holds some (a values table's drift notes follow inherited pre-training)."""
    return [build_differences(df, spec, references) if spec.kind == "differences"
            else build_table(df, spec, references, every) for spec in specs]


def verdict_lines(table: TableData) -> list[str]:
    """``Verdict (95%): holds: ...`` for each finding of the table (plain text)."""
    return [f"Verdict ({LEVEL:.0%}): {v.text(_verdict_digits(table, v))}" for v in table.verdicts]


def _verdict_digits(table: TableData, verdict: Verdict) -> int:
    f = verdict.finding
    return next((c.digits for c in table.spec.columns if (c.stage, c.metric) == (f.stage, f.metric)), 2)


def _grid(table: TableData, style: Style) -> tuple[list[str], list[list[str]]]:
    """Headers and body of the paper-layout table in one style."""
    headers = [style.text(h) for h in table.spec.row_headers]
    for col in table.columns:
        headers.append(style.text(col.title))
        if col.has_reference:
            headers += [style.text("paper"), style.text("Δ (floor)")]
    body = []
    for row in table.rows:
        parts = row.parts
        line = [style.text(p) for p in parts[:-1]] + [render_label(parts[-1], row.notes, style)]
        for col, cell in zip(table.columns, row.cells):
            line.append(render_value(cell, style))
            if col.has_reference:
                line += [style.text(paper_text(cell)), style.text(delta_text(cell))]
        body.append(line)
    return headers, body


def _align(table: TableData) -> list[str]:
    """Row keys left, numbers right."""
    n_value_cols = sum(2 if c.has_reference else 0 for c in table.columns) + len(table.columns)
    return ["left"] * len(table.spec.rows) + ["right"] * n_value_cols


def _tabulate(table: TableData, fmt: str) -> str:
    headers, body = _grid(table, STYLES[fmt])
    return tabulate(
        body, headers=headers, tablefmt=_TABULATE_FORMATS[fmt], disable_numparse=True, colalign=_align(table)
    )


NO_ROWS = "No runs match this table yet."


def _markdown(table: TableData) -> str:
    parts = [f"### {table.spec.title}", _tabulate(table, "markdown") if table.rows else NO_ROWS]
    parts += [text for text in (table.spec.caption, table.legend) if text]
    if table.verdicts:
        parts.append("\n".join(f"- {line}" for line in verdict_lines(table)))
    if table.notes:
        parts.append(
            "Notes († = protocol drift from the reference recipe):\n"
            + "\n".join(f"- [{i}] {t}" for i, t in enumerate(table.notes, 1))
        )
    if table.sources:
        parts.append("Sources:\n" + "\n".join(f"- {s}" for s in table.sources))
    return "\n\n".join(parts) + "\n"


def _latex(table: TableData) -> str:
    esc = STYLES["latex"].text
    caption = esc(". ".join(t for t in (table.spec.title, table.spec.caption, table.legend) if t))
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{table.spec.name}}}",
        _tabulate(table, "latex") if table.rows else NO_ROWS,
        "",
        r"\smallskip",
        r"{\footnotesize",
    ]
    lines += [esc(line) + r"\par" for line in verdict_lines(table)]
    # one paragraph per line (\par, not \\: a "\\" followed by "[" would be read as a length argument)
    if table.notes:
        lines.append(esc("Notes († = protocol drift from the reference recipe):") + r"\par")
        lines += [rf"$^{{{i}}}$ {esc(t)}\par" for i, t in enumerate(table.notes, 1)]
    if table.sources:
        lines.append(r"Sources:\par")
        lines += [esc(s) + r"\par" for s in table.sources]
    lines += [r"}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _html(table: TableData) -> str:
    esc = STYLES["html"].text
    parts = [f"<h3>{esc(table.spec.title)}</h3>", _tabulate(table, "html") if table.rows else f"<p>{NO_ROWS}</p>"]
    parts += [f"<p>{esc(text)}</p>" for text in (table.spec.caption, table.legend) if text]
    if table.verdicts:
        parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in verdict_lines(table)) + "</ul>")
    if table.notes:
        items = "".join(f'<li value="{i}">{esc(t)}</li>' for i, t in enumerate(table.notes, 1))
        parts.append(f"<p>Notes (&dagger; = protocol drift from the reference recipe):</p><ol>{items}</ol>")
    if table.sources:
        parts.append("<p>Sources:</p><ul>" + "".join(f"<li>{esc(s)}</li>" for s in table.sources) + "</ul>")
    return "\n".join(parts) + "\n"


def _csv_records(table: TableData) -> list[dict[str, object]]:
    """One record per (row, column): the numbers, unformatted, with notes as text; then one record per note
    that concerns the whole table (empty row and column)."""
    records = []
    for row in table.rows:
        row_key = ";".join(f"{k}={v}" for k, v in row.key.items())
        row_notes = [table.notes[i - 1] for i in row.notes]
        for col, cell in zip(table.columns, row.cells):
            ref, floor = cell.reference, cell.floor
            records.append(
                {
                    "table": table.spec.name,
                    "row": row.label,
                    "row_key": row_key,
                    "column": col.title,
                    "stage": col.column.stage if col.column else "+".join(table.spec.budget_stages),
                    "metric": col.column.metric if col.column else col.budget_field,
                    "engine": col.engine or "",
                    "mean": cell.mean,
                    "std": cell.std,
                    "ci95_half": cell.ci,
                    "ci95_low": None if cell.ci is None else cell.mean - cell.ci,
                    "ci95_high": None if cell.ci is None else cell.mean + cell.ci,
                    "n": cell.n,
                    "n_expected": cell.n_expected,
                    "reference_key": cell.reference_key or "",
                    "paper": cell.paper,
                    "paper_std": ref.std if ref is not None else None,
                    "paper_source": ref.source if ref is not None else "",
                    "delta": cell.delta,
                    "noise_floor": floor.value if floor is not None else None,
                    "drift": " | ".join(cell.drift),
                    "notes": " | ".join(row_notes + [table.notes[i - 1] for i in cell.notes]),
                }
            )
    used = {i for row in table.rows for i in [*row.notes, *(n for c in row.cells for n in c.notes)]}
    for i, text in enumerate(table.notes, 1):  # notes about the whole table (unreadable run directories)
        if i not in used:
            records.append({"table": table.spec.name, "row": "", "column": "", "notes": text})
    records += [_verdict_record(table, v) for v in table.verdicts]
    return records


def _verdict_record(table: TableData, verdict: Verdict) -> dict[str, object]:
    """A finding's verdict as one CSV record: state, the deciding comparison and its interval."""
    decided = verdict.decided_by
    iv = decided.paired.interval if decided.paired is not None else None
    return {"table": table.spec.name, "row": f"{decided.better} - {decided.worse}", "column": "verdict",
            "stage": verdict.finding.stage, "metric": verdict.finding.metric, "verdict": verdict.state,
            "finding": verdict.finding.claim, "mean": iv.mean if iv else None, "n": iv.n if iv else 0,
            "ci95_half": iv.half if iv else None, "ci95_low": iv.low if iv else None,
            "ci95_high": iv.high if iv else None, "paper_source": verdict.finding.source}


def format_tables(tables: Sequence[TableData], fmt: str) -> str:
    """Format aggregated tables; markdown/LaTeX/HTML tables are separated by a blank line."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        records = [r for t in tables for r in _csv_records(t)]
        return pd.DataFrame.from_records(records).to_csv(index=False, float_format="%.6g", lineterminator="\n")
    render = {"markdown": _markdown, "latex": _latex, "html": _html}[fmt]
    return "\n".join(render(t) for t in tables)


def latex_document(body: str) -> str:
    """A standalone LaTeX document around rendered tables (``pdflatex`` with texlive-latex-base only)."""
    return "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage[margin=1.5cm,landscape]{geometry}",
            r"\begin{document}",
            body,
            r"\end{document}",
            "",
        ]
    )


def render_tables(df: pd.DataFrame, specs: Sequence[TableSpec], references: References, fmt: str = "markdown") -> str:
    """Render every spec's table from the results DataFrame in ``fmt`` (markdown | latex | csv | html)."""
    return format_tables(build_tables(df, specs, references), fmt)
