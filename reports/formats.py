"""Cell text for each output format: the same numbers, each format's symbols and escaping.

A cell reads ``mean ± ci (n=k)``, ci the half-width of the 95% Student-t interval over seeds
(``(n=k of m)`` when runs are missing, ``(n=1, no CI)`` for one run), ``†`` when the runs drift from
the reference recipe, and ``[k]`` for its footnotes. A missing number or reference reads ``missing``;
a column without a reference has no paper column at all.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from reports.cells import Cell

MISSING = "missing"
NOT_APPLICABLE = "n/a"  # the row's runs never have this column's stage


def _latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few non-ASCII symbols the report uses; the result is ASCII."""
    specials = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
    }
    symbols = {
        "±": r"$\pm$",
        "—": "---",
        "–": "--",
        "−": "-",
        "Δ": r"$\Delta$",
        "†": r"$^\dagger$",
        "≈": r"$\approx$",
        "×": r"$\times$",
        "…": "...",
        "’": "'",
        "“": "``",
        "”": "''",
    }
    out = []
    for ch in text:
        if ch in specials:
            out.append(specials[ch])
        elif ch in symbols:
            out.append(symbols[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _markdown_marks(notes: list[int], dagger: bool) -> str:
    return ("†" if dagger else "") + (f" [{', '.join(map(str, notes))}]" if notes else "")


def _latex_marks(notes: list[int], dagger: bool) -> str:
    marks = ([r"\dagger"] if dagger else []) + [str(n) for n in notes]
    return f"$^{{{','.join(marks)}}}$" if marks else ""


def _html_marks(notes: list[int], dagger: bool) -> str:
    marks = (["&dagger;"] if dagger else []) + [str(n) for n in notes]
    return f"<sup>{','.join(marks)}</sup>" if marks else ""


@dataclass(frozen=True)
class Style:
    """How one format escapes text and writes the marks (drift dagger, footnote numbers) after a cell."""

    name: str
    escape: Callable[[str], str]
    marks: Callable[[list[int], bool], str]

    def text(self, raw: str) -> str:
        return self.escape(raw)


STYLES = {
    "markdown": Style("markdown", _markdown_escape, _markdown_marks),
    "latex": Style("latex", _latex_escape, _latex_marks),
    "html": Style("html", html.escape, _html_marks),
}


def fmt_number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def count_text(cell: Cell) -> str:
    """``n=3``, ``n=2 of 3`` (expected runs without a result) or ``n=1, no CI`` (one run has no interval)."""
    text = f"n={cell.n}" if cell.n == cell.n_expected else f"n={cell.n} of {cell.n_expected}"
    return text + (", no CI" if cell.n == 1 else "")


def value_text(cell: Cell) -> str:
    """``84.10 ± 0.30 (n=3)`` (± the 95% interval's half-width), ``84.10 (n=1, no CI)``, ``84.10 ± 1.27
    (n=2 of 3)`` or ``missing (n=0 of 3)`` (plain text); a control margin follows the mean: ``[+5.00]``."""
    if cell.not_applicable:
        return NOT_APPLICABLE
    if cell.mean is None:
        return MISSING if cell.n_expected == 0 else f"{MISSING} ({count_text(cell)})"
    text = f"{cell.mean:+.{cell.digits}f}" if cell.signed else fmt_number(cell.mean, cell.digits)
    if cell.ci is not None:
        text += f" ± {fmt_number(cell.ci, cell.digits)}"
    if cell.margin is not None:
        text += f" [{cell.margin:+.{cell.digits}f}]"
    return f"{text} ({count_text(cell)})"


def paper_text(cell: Cell) -> str:
    """The reference as printed (``85.1``, ``83.57 ± 0.08``) or ``missing``."""
    ref = cell.reference
    if ref is None or ref.value is None:
        return MISSING
    sign = "+" if cell.signed else ""
    text = f"{ref.value:{sign}.1f}" if float(ref.value).is_integer() else f"{ref.value:{sign}g}"
    return text + (f" ± {ref.std:g}" if ref.std is not None else "")


def delta_text(cell: Cell) -> str:
    """``+0.30 (floor 0.1)``; ``—`` when either side is missing."""
    if cell.delta is None:
        return "—"
    text = f"{cell.delta:+.{cell.digits}f}"
    return text + (f" (floor {cell.floor.value:g})" if cell.floor is not None else "")


def render_value(cell: Cell, style: Style) -> str:
    """The reproduced cell in a format: value, drift marker, footnote marks."""
    return style.text(value_text(cell)) + style.marks(cell.notes, bool(cell.drift))


def render_label(text: str, notes: list[int], style: Style) -> str:
    return style.text(text) + style.marks(notes, False)
