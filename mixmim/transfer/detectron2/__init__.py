"""The detectron2 engine of the ``coco`` stage (the paper's recipe). detectron2 is imported lazily.

Nothing here imports detectron2 at module import: :func:`require_detectron2` checks for it and, when it is
missing, raises an ``ImportError`` that says how to install it. ``backbone.py``, ``recipe.py``,
``train.py`` and ``configs/`` import it and are only imported once it is known to be there.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = (
    "coco.engine=detectron2 needs detectron2, which is not on PyPI. Build it from source against the "
    "installed torch and CUDA (docs/coco.md): pip install --upgrade pip 'setuptools<81' && "
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' (or git clone "
    "it and pip install --no-build-isolation -e detectron2). Or use coco.engine=torchvision (built in; its "
    "numbers are not comparable with the paper's)."
)


def detectron2_available() -> bool:
    """Whether ``import detectron2`` would find a package (nothing is imported)."""
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2() -> None:
    """Fail early, with install instructions, when detectron2 is missing or broken.

    Raises:
        ImportError: detectron2 cannot be imported.
    """
    if not detectron2_available():
        raise ImportError(INSTALL_HINT)
    try:
        import detectron2.modeling  # noqa: F401  (a build against another torch fails here)
    except ImportError as err:
        raise ImportError(f"detectron2 is installed but cannot be imported ({err}). {INSTALL_HINT}") from err
