"""Results -> paper-style tables, plots and a review bundle. Model-free: reads run directories and references.

Typical use (what ``mixmim-bench report EXP`` does)::

    from reports import Column, TableSpec, report_experiment

    specs = [TableSpec(name="main", title="ImageNet-1K", rows=("method",),
                       columns=(Column("finetune", "top1", "Fine-tune", reference="mixmim_b_600ep_top1"),))]
    result = report_experiment(exp_dir, specs, out_dir)
    print(result.markdown)

The names load with their module on first use (``lazy_loader``): ``reports.spec`` (what experiment
definitions import) costs no pandas or matplotlib.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "bundle": ["build_bundle"],
    "plots": ["make_plots"],
    "references": ["References", "load_references"],
    "render": ["FORMATS", "build_tables", "format_tables", "render_tables"],
    "report": ["ReportError", "ReportResult", "default_output_dir", "report_experiment"],
    "results": ["read_curves", "read_results"],
    "spec": ["Column", "TableSpec"],
})
