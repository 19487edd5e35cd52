"""Results -> paper-style tables, plots and a review bundle. Model-free: reads run directories and references.

Typical use (what ``mixmim-bench report EXP`` does)::

    from reports import Column, TableSpec, report_experiment

    specs = [TableSpec(name="main", title="ImageNet-1K", rows=("method",),
                       columns=(Column("finetune", "top1", "Fine-tune", reference="mixmim_b_600ep_top1"),))]
    result = report_experiment(exp_dir, specs, out_dir)
    print(result.markdown)
"""

from reports.bundle import build_bundle
from reports.plots import make_plots
from reports.references import References, load_references
from reports.render import FORMATS, build_tables, format_tables, render_tables
from reports.report import ReportError, ReportResult, default_output_dir, report_experiment
from reports.results import read_curves, read_results
from reports.spec import Column, TableSpec

__all__ = [
    "FORMATS",
    "Column",
    "References",
    "ReportError",
    "ReportResult",
    "TableSpec",
    "build_bundle",
    "build_tables",
    "default_output_dir",
    "format_tables",
    "load_references",
    "make_plots",
    "read_curves",
    "read_results",
    "render_tables",
    "report_experiment",
]
