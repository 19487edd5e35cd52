"""Expected errors of the command line, as one-paragraph messages with the fix and distinct exit codes.

``mixmim-bench`` turns the errors a user can fix (a bad key, a folder holding other results, no Slurm, no
results to report, Ctrl-C) into one message on stderr and an exit code; anything else is a bug and keeps
its traceback. The exit codes (also in the README):

====  =====================================================================================
 0    success (a run left to another live launch is not a failure)
 1    a stage failed (the summary names its log)
 2    the command or config is wrong (unknown key, bad value, bad budget, a run that cannot start,
      a folder holding results of another config)
 3    nothing to report, or the report cannot be written
 4    Slurm cannot be reached or refused the submission
 5    a run folder is busy or damaged (held by another process, an unreadable checkpoint, a result
      that would be overwritten)
 130  interrupted (Ctrl-C); the same command resumes
====  =====================================================================================

Error types are looked up only in modules already imported (an error of a module that was never imported
cannot have been raised), so this module imports neither torch nor submitit.
"""

from __future__ import annotations

import sys

EXIT_USAGE, EXIT_REPORT, EXIT_SLURM, EXIT_RUN_FOLDER, EXIT_INTERRUPTED = 2, 3, 4, 5, 130

# (module, class name) -> exit code; a class is considered only when its module is loaded.
EXPECTED: dict[tuple[str, str], int] = {
    ("mixmim.config", "ConfigError"): EXIT_USAGE,
    ("experiments.launching", "RunSetupError"): EXIT_USAGE,
    ("experiments.budget", "BudgetError"): EXIT_USAGE,
    ("mixmim.data.folder", "DatasetLayoutError"): EXIT_USAGE,  # a data.root that is empty or not an ImageFolder
    ("reports.report", "ReportError"): EXIT_REPORT,
    ("reports.bundle", "BundleExistsError"): EXIT_REPORT,
    ("reports.references", "ReferenceDataError"): EXIT_REPORT,
    ("slurm.submit", "SlurmSubmissionError"): EXIT_SLURM,
    ("mixmim.runs.runlock", "RunLockError"): EXIT_RUN_FOLDER,
    ("mixmim.runs.rundir", "ResultExistsError"): EXIT_RUN_FOLDER,
    ("mixmim.weights.torchfile", "CheckpointFileError"): EXIT_RUN_FOLDER,
}

INTERRUPTED_MESSAGE = ("interrupted (Ctrl-C). Stages that were running are recorded as interrupted, not failed; "
                       "run the same command again to resume them from their last checkpoint.")  # fmt: skip


def explain(error: BaseException) -> tuple[str, int] | None:
    """``(message, exit code)`` for an expected error, None for an unexpected one (show its traceback)."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED_MESSAGE, EXIT_INTERRUPTED
    if isinstance(error, KeyError):  # unknown experiment, method, backbone: the message is the first argument
        return (str(error.args[0]) if error.args else repr(error)), EXIT_USAGE
    for (module_name, class_name), code in EXPECTED.items():
        module = sys.modules.get(module_name)
        kind = getattr(module, class_name, None) if module is not None else None
        if kind is not None and isinstance(error, kind):
            return str(error), code
    return None
