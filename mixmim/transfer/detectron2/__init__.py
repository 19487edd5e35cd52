"""The detectron2 engine of the ``coco`` stage (the paper's recipe). detectron2 is imported lazily.

Nothing here imports detectron2 at module import: :func:`require_detectron2` checks for it and, when it is
missing, raises an ``ImportError`` that says how to install it. ``backbone.py``, ``recipe.py``,
``train.py`` and ``configs/`` import it and are only imported once it is known to be there.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = (
    "coco.engine=detectron2 needs detectron2, which is not on PyPI. Build it from source against the "
    "installed torch and CUDA (docs/coco.md): pip install --upgrade pip 'setuptools<81' wheel && "
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' (or git clone "
    "it and pip install --no-build-isolation -e detectron2), then pip install shapely. Or use "
    "coco.engine=torchvision (built in; its numbers are not comparable with the paper's)."
)
# What the engine imports at run time beyond detectron2's own import, by module -> pip package. detectron2's
# setup.py installs most of them, but not shapely (imported only when the large-scale-jitter crop cuts a
# polygon, i.e. at the first training step), and a --no-deps or partial install can miss any of them.
ENGINE_PACKAGES = {"detectron2": "detectron2", "shapely": "shapely", "pycocotools": "pycocotools",
                   "fvcore": "fvcore", "iopath": "iopath", "omegaconf": "omegaconf", "hydra": "hydra-core",
                   "cloudpickle": "cloudpickle"}


def detectron2_available() -> bool:
    """Whether ``import detectron2`` would find a package (nothing is imported)."""
    return importlib.util.find_spec("detectron2") is not None


def missing_engine_packages() -> list[str]:
    """pip names of the packages of :data:`ENGINE_PACKAGES` that cannot be found (detectron2 excluded)."""
    return [pip for module, pip in ENGINE_PACKAGES.items()
            if module != "detectron2" and importlib.util.find_spec(module) is None]


def require_detectron2() -> None:
    """Fail early, with install instructions, when detectron2 or a package its engine needs is missing or broken.

    Raises:
        ImportError: detectron2 cannot be imported, or a package of :data:`ENGINE_PACKAGES` is missing (the
            message gives the ``pip install`` command).
    """
    if not detectron2_available():
        raise ImportError(INSTALL_HINT)
    missing = missing_engine_packages()
    if missing:
        raise ImportError(f"coco.engine=detectron2 needs {', '.join(missing)}, not installed: "
                          f"pip install {' '.join(missing)}")
    try:
        import detectron2.modeling  # noqa: F401  (a build against another torch fails here)
    except ImportError as err:
        raise ImportError(f"detectron2 is installed but cannot be imported ({err}). {INSTALL_HINT}") from err
