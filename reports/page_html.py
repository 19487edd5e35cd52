"""Small HTML builders for the review page: escaped text, tables with a sticky header in a scroll box,
collapsed blocks, and the tables rendered by ``reports.render`` with their marks explained on hover."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reports.cells import TableData
from reports.render import format_tables

esc = html.escape
_MARKS = re.compile(r"<sup>([^<]*)</sup>")
DAGGER_TEXT = "† protocol drift: the runs' recipe differs from the reference's (see the numbered note)"


def cell_text(value: Any) -> str:
    """A value as table text: missing (None, NaN) as '-'."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    try:
        import pandas as pd

        if pd.isna(value):
            return "-"
    except (TypeError, ValueError):
        pass
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, numeric: Sequence[str] = (),
          caption: str = "") -> str:
    """An HTML table of ``rows`` (dicts) in a scroll box with a sticky header; ``numeric`` columns right-aligned."""
    if not rows:
        return '<p class="muted">(none)</p>'
    columns = list(columns or rows[0].keys())
    right = set(numeric)
    head = "".join(f'<th style="text-align: right;">{esc(c)}</th>' if c in right else f"<th>{esc(c)}</th>"
                   for c in columns)
    body = []
    for row in rows:
        cells = "".join(
            f'<td style="text-align: right;">{esc(cell_text(row.get(c)))}</td>' if c in right
            else f"<td>{esc(cell_text(row.get(c)))}</td>" for c in columns)
        body.append(f"<tr>{cells}</tr>")
    cap = f'<p class="note">{esc(caption)}</p>' if caption else ""
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{cap}'


def details(summary: str, body_html: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body_html}</details>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def _mark_title(marks: str, notes: Sequence[str]) -> str:
    """The hover text of a mark like ``†,2,5``: the dagger's meaning and each numbered note."""
    parts = []
    for mark in html.unescape(marks).split(","):
        mark = mark.strip()
        if mark == "†":
            parts.append(DAGGER_TEXT)
        elif mark.isdigit() and 0 < int(mark) <= len(notes):
            parts.append(f"[{mark}] {notes[int(mark) - 1]}")
    return "\n".join(parts)


def result_table(data: TableData) -> str:
    """One table as ``reports.render`` writes it in HTML, with its grid in a scroll box (sticky header) and
    each mark (†, note numbers) carrying its notes as a hover title; the numbered notes stay below it."""
    fragment = format_tables([data], "html")
    fragment = fragment.replace("<table>", '<div class="scroll"><table>').replace("</table>", "</table></div>")

    def titled(match: re.Match[str]) -> str:
        return f'<sup title="{esc(_mark_title(match.group(1), data.notes))}">{match.group(1)}</sup>'

    fragment = _MARKS.sub(titled, fragment)
    return fragment.replace("<ol>", '<ol class="notes">').replace("<ul>", '<ul class="sources">')
