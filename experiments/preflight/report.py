"""The preflight table (markdown) from its rows. Torch-free."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from experiments.preflight.failures import failure_line


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} GB"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def table_row(row: dict[str, Any]) -> dict[str, str]:
    """One line of the table."""
    size = f"@{row['img_size'] or 'default'}" + (f" coco@{row['coco_img_size']}" if row.get("coco_img_size") else "")
    fits = row.get("fits")
    verdict = "fits" if fits else "DOES NOT FIT" if fits is False else "?"
    memory = f"{_gb(row.get('memory_at_recipe_bytes'))} ({verdict})"
    mfu = f", MFU {row['mfu']:.2f}" if row.get("mfu") is not None else ""
    return {
        "stage": row["stage"],
        "method": row["method"],
        "backbone": row["backbone"] + size,
        "runs": str(len(row.get("runs", []))),
        "status": row["status"],
        "batch (recipe)": f"{row.get('batch_size', '-')} ({row.get('recipe_batch', '-')})",
        "precision": str(row.get("precision", "-")),
        "step s": _num(row.get("step_time_s"), "{:.3f}") + mfu,
        "peak mem": _gb(row.get("peak_bytes")),
        f"mem @ recipe batch on {row.get('gpu')}": memory if row.get("recipe_batch") else "-",
        "loader img/s/worker": _num(row.get("loader_images_per_s"), "{:.1f}"),
        "workers needed": str(row.get("workers_needed", "-")),
        "ckpt": _gb(row.get("checkpoint_bytes")),
        "disk (runs)": _gb(row.get("disk_bytes")),
        "hours @ measured": f"{_hours(row.get('hours_measured'))} {row.get('hours_unit', '')}".strip(),
        "GPU-h est.": _hours(row.get("gpu_hours_estimate")),
    }


def preflight_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The table, the failures (one line each) and the notes, in markdown."""
    if not rows:
        return f"# {title}\n\nno stages."
    device = rows[0].get("device", "?")
    lines = [f"# {title}", "", tabulate([table_row(r) for r in rows], headers="keys", tablefmt="github",
                                         disable_numparse=True), ""]  # fmt: skip
    lines.append(
        f"Measured on {device}. step s: {rows[0].get('step_basis', '')}; peak mem: {rows[0].get('memory_kind', '-')}; "
        f"mem @ recipe batch: {next((r['memory_basis'] for r in rows if r.get('memory_basis')), '-')}; workers "
        f"needed: {next((r['workers_basis'] for r in rows if r.get('workers_basis')), '-')}; GPU-h est.: forward "
        "FLOPs at an assumed MFU (experiments/cost.py). Free disk of the output filesystem: "
        f"{_gb(rows[0].get('disk_free_bytes'))}; disk (runs): the checkpoints every covered run keeps."
    )
    failures = [failure_line(r) for r in rows if r["status"] != "passed"]
    if failures:
        lines += ["", "## Failures", "", *[f"- {f}" for f in failures]]
    notes: dict[str, list[str]] = {}  # note -> the stages it applies to
    for r in rows:
        for note in (*(f"WARNING: {w}" for w in r.get("warnings", [])), *r.get("notes", [])):
            notes.setdefault(note, []).append(f"{r['stage']} {r['method']} {r['backbone']}")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note} ({len(where)} stages: {', '.join(where)})" for note, where in notes.items()]
    lines += ["", "## Runs covered", ""]
    lines += [f"- {r['stage']} {r['method']} {r['backbone']}: {', '.join(r.get('runs', []))}" for r in rows]
    return "\n".join(lines) + "\n"
