"""mixmim: the core library of mixmim-bench (backbones, masking, MixMIM, data, engine, evaluations).

Importing it makes the backbones known to timm (``timm.create_model("mixmim_base")``) without loading torch:
the registration runs when timm is imported (at once if it already is), through a post-import hook
(``wrapt``). timm keeps no lazy registry or plugin entry points of its own, and a module ``__getattr__``
would not fire for ``timm.create_model``, so the hook is what lets ``import mixmim`` stay cheap for the
model-free paths (``mixmim.runs.rundir``, ``mixmim.config``: the CLI's ``list``/``status``/``report``, ``slurm``,
``reports``) while the timm names still work for a user who imports both.
"""

import importlib
import sys

import wrapt

__version__ = "0.1.0"

BACKBONES_PACKAGE = "mixmim.backbones"  # its import registers the timm entry points (backbones/registry.py)


@wrapt.when_imported("timm")
def _register_backbones_in_timm(_timm) -> None:
    # Already in sys.modules: the package is being (or has been) imported, and it imports timm itself; its
    # registry registers when that import completes. Importing it again from here would be circular.
    if BACKBONES_PACKAGE not in sys.modules:
        importlib.import_module(BACKBONES_PACKAGE)
