"""The detectron2 engine of the ``coco`` stage (the paper's recipe). detectron2 is imported lazily.

Nothing here imports detectron2 at module import. :func:`check_detectron2` lists what stops the engine
from running here (detectron2 missing, a package it needs missing, a build that does not import against
the installed torch, a build without compiled or without CUDA ops where the stage trains on CUDA), each
problem one message that names the fix; ``run`` and ``run --dry-run`` call it for every run with
``coco.engine=detectron2`` before anything launches, and :func:`require_detectron2` at the stage's start.
``backbone.py``, ``recipe.py``, ``train.py`` and ``configs/`` import detectron2 and are only imported once
it is known to be there.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

# The detectron2 source the suite was tested with (docs/coco.md builds exactly this commit).
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
PIN_COMMAND = ("pip install --no-build-isolation "
               f"'git+https://github.com/facebookresearch/detectron2.git@{DETECTRON2_COMMIT}'")
BUILD_STEPS = (f"pip install 'setuptools<81' wheel && MAX_JOBS=2 {PIN_COMMAND} && pip install shapely "
               "(docs/coco.md, 'Installing detectron2')")
INSTALL_HINT = (
    "coco.engine=detectron2 needs detectron2, which is not on PyPI: build it from source against the installed "
    f"torch, in the suite's environment: {BUILD_STEPS}. Or use coco.engine=torchvision (built in; its numbers "
    "are not comparable with the paper's)."
)
REBUILD = f"rebuild it against the installed torch: pip uninstall -y detectron2 && {BUILD_STEPS}"
CUDA_BUILD = ("rebuild it on a machine with the CUDA toolkit of torch.version.cuda (nvcc on PATH or CUDA_HOME): "
              "pip uninstall -y detectron2 && export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST='8.0;9.0' (your GPUs' "
              f"compute capabilities) && {BUILD_STEPS}")
# What the engine imports at run time beyond detectron2's own import, by module -> pip package. detectron2's
# setup.py installs most of them, but not shapely (imported only when the large-scale-jitter crop cuts a
# polygon, i.e. at the first training step), and a --no-deps or partial install can miss any of them.
ENGINE_PACKAGES = {"detectron2": "detectron2", "shapely": "shapely", "pycocotools": "pycocotools",
                   "fvcore": "fvcore", "iopath": "iopath", "omegaconf": "omegaconf", "hydra": "hydra-core",
                   "cloudpickle": "cloudpickle"}
# The detectron2 modules the engine imports (train.py, recipe.py, backbone.py); model_zoo needs pkg_resources.
ENGINE_MODULES = ("detectron2.checkpoint", "detectron2.config", "detectron2.data.transforms", "detectron2.engine",
                  "detectron2.evaluation", "detectron2.model_zoo", "detectron2.modeling", "detectron2.solver")
# Modules that a broken environment lacks, beyond ENGINE_PACKAGES -> the fix.
MODULE_FIXES = {"pkg_resources": "pip install 'setuptools<81' (detectron2's model_zoo imports pkg_resources, "
                                 "which setuptools 81 removed)"}


def detectron2_available() -> bool:
    """Whether ``import detectron2`` would find a package (nothing is imported)."""
    return importlib.util.find_spec("detectron2") is not None


def missing_engine_packages() -> list[str]:
    """pip names of the packages of :data:`ENGINE_PACKAGES` that cannot be found (detectron2 excluded)."""
    return [pip for module, pip in ENGINE_PACKAGES.items()
            if module != "detectron2" and importlib.util.find_spec(module) is None]


def check_detectron2(cuda: bool) -> list[str]:
    """What stops the detectron2 engine from running in this environment; empty when nothing does.

    Args:
        cuda: whether the stage trains on CUDA (then a build without CUDA ops is refused, as a sign that it
            was built where nvcc was not found, for another machine than the one that runs it).

    Returns:
        One message per problem, each naming the fix; the first problem found stops the checks that need it
        solved (nothing is imported before detectron2 and its packages are found).
    """
    if not detectron2_available():
        return [INSTALL_HINT]
    missing = missing_engine_packages()
    if missing:
        return [f"coco.engine=detectron2 needs {', '.join(missing)}, not installed: pip install {' '.join(missing)}"]
    problem = _source_folder_problem() or _import_problem()
    if problem:
        return [problem]
    return _build_problems(cuda)


def _source_folder_problem() -> str:
    """A message when ``import detectron2`` would find a source checkout (no compiled ops) instead of the
    installed package: a clone in the current directory or on ``PYTHONPATH``."""
    origin = importlib.util.find_spec("detectron2").origin
    where = Path(origin).parent if origin else None
    if where is None or not (where.parent / "setup.py").is_file():
        return ""
    if any(where.glob("_C.*")):  # a clone built in place (pip install -e): it is the installed package
        return ""
    return (f"`import detectron2` finds the source folder {where} (a clone in the current directory or on "
            "PYTHONPATH), which has no compiled ops: run from another directory, or remove the clone from "
            "PYTHONPATH")


def _import_problem() -> str:
    """The engine's detectron2 modules import, or a message naming the module that fails and the fix."""
    for module in ENGINE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as err:
            missing = err.name if isinstance(err, ModuleNotFoundError) and err.name else ""
            fix = MODULE_FIXES.get(missing, "")
            if missing and not fix and not missing.startswith("detectron2"):
                fix = f"install the package that provides {missing!r} (pip install {missing.split('.')[0]})"
            return f"detectron2 is installed but `import {module}` fails ({err}): {fix or REBUILD}"
    return ""


def _build_problems(cuda: bool) -> list[str]:
    """detectron2's compiled ops (``detectron2._C``) import and, where the stage trains on CUDA, include CUDA."""
    import detectron2

    where = Path(detectron2.__file__).parent
    try:
        ops = importlib.import_module("detectron2._C")
    except ImportError as err:
        return [f"detectron2 at {where} has no usable compiled ops (detectron2._C: {err}); {REBUILD}"]
    if cuda and not built_with_cuda(ops):
        return [f"this run trains on CUDA but detectron2 at {where} was built without CUDA ops (its CUDA compiler: "
                f"'{ops.get_cuda_version()}', e.g. built where nvcc was not found); {CUDA_BUILD}"]
    return []


def built_with_cuda(ops) -> bool:
    """Whether the compiled module ``detectron2._C`` has CUDA kernels: ``has_cuda()`` (the compile-time flag
    ``WITH_CUDA``), or, in builds older than it, ``get_cuda_version()`` other than ``not available``."""
    if hasattr(ops, "has_cuda"):
        return bool(ops.has_cuda())
    return ops.get_cuda_version() != "not available"


def require_detectron2(cuda: bool | None = None) -> None:
    """Fail early, with the fix, when :func:`check_detectron2` finds a problem.

    Args:
        cuda: whether the stage trains on CUDA; None: ``torch.cuda.is_available()`` (the stage's rule).

    Raises:
        ImportError: the problems, one per line.
    """
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    problems = check_detectron2(cuda)
    if problems:
        raise ImportError("\n".join(problems))
