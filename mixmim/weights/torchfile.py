"""Reading ``.pth`` files safely: always ``weights_only=True``, with an allow-list and clear errors.

``torch.load(..., weights_only=True)`` refuses any pickled object that is not a tensor or a plain
container. Official MixMIM (and MAE) checkpoints also pickle the training script's ``argparse.Namespace``
under ``args``; that type (and the path types such namespaces hold) is allow-listed here, so those files
load without ``weights_only=False`` and its risk of running code from the file. Files that are not
checkpoints (a truncated copy, a text or image file) get an error that says so and names the file,
instead of torch's advice to retry with ``weights_only=False``.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

# What a checkpoint may pickle besides tensors and containers: the official ``args`` namespace and the paths in it.
SAFE_GLOBALS = [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath,
                pathlib.PureWindowsPath]  # fmt: skip


class CheckpointFileError(ValueError):
    """A file cannot be read as a checkpoint (truncated, not a checkpoint, or pickling unknown types)."""


def _safe_globals() -> contextlib.AbstractContextManager:
    """The allow-list as a context (torch >= 2.5), or registered once for the process (torch 2.4)."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):
        return serialization.safe_globals(SAFE_GLOBALS)
    serialization.add_safe_globals(SAFE_GLOBALS)
    return contextlib.nullcontext()


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with :data:`SAFE_GLOBALS` allowed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointFileError: the file is truncated or not a PyTorch file, or it pickles a type outside the
            allow-list (the message names the file, the problem and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the path of a local .pth file")
    try:
        with _safe_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Unsupported global" in text or "GLOBAL" in text:
            name = text.split("GLOBAL", 1)[-1].split()[0] if "GLOBAL" in text else "an object"
            raise CheckpointFileError(
                f"{path} pickles {name}, which a checkpoint may not hold (allowed besides tensors and "
                f"containers: {', '.join(t.__name__ for t in SAFE_GLOBALS)}). If the file comes from a source "
                "you trust, save its state dict alone and pass that file: "
                f"torch.save(torch.load('{path}', weights_only=False)['model'], 'weights.pth')"
            ) from None
        raise _not_a_checkpoint(path, error) from None
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise _not_a_checkpoint(path, error) from None


def _not_a_checkpoint(path: Path, error: BaseException) -> CheckpointFileError:
    reason = str(error).split(". ")[0].strip() or type(error).__name__
    size = path.stat().st_size
    return CheckpointFileError(
        f"{path} ({size} bytes) is not a readable PyTorch checkpoint ({type(error).__name__}: {reason[:200]}): "
        "it is truncated or corrupt, or not a file written by torch.save. Pass the path of a .pth checkpoint "
        "(an official release or a suite encoder.pth / checkpoint-*.pth), or copy the file again if it was cut."
    )
