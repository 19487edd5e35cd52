"""``mixmim-bench preflight``: every stage of an experiment at its real shapes, on real JPEGs, measured before a
GPU-hour is spent (docs/preflight.md). :func:`run_preflight` runs it; :mod:`.rows` is what the cost projection
reads back (torch-free)."""

from experiments.preflight.run import PreflightOptions, PreflightResult, run_preflight

__all__ = ["PreflightOptions", "PreflightResult", "run_preflight"]
