"""Pre-trained weights for the detection adapter: where they come from and how their keys map.

Sources (``RunConfig.init``, resolved by :func:`mixmim.weights.init_source.resolve_init`): ``pretrain`` -> this
run's ``<run_dir>/pretrain/encoder.pth``; a path -> a suite or official checkpoint (``{"model": ...}``,
pre-training or fine-tuning; decoder keys are dropped); ``random`` -> no weights.

Key mapping (:func:`map_encoder_keys`), checked for full coverage by the tests: every backbone key ``k``
becomes ``encoder.k``, except the hierarchical backbone's final norm ``norm.*``, which becomes the last
stage's norm ``stage_norms.<n-1>.*`` (it normalises exactly that map), and the classification head
``head.*``, which detection drops. No other key is dropped or invented; the adapter's remaining keys
(:func:`new_detection_keys`) are new layers initialised at random.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mixmim.transfer.adapter import PyramidAdapter
from mixmim.transfer.vitdet import REL_POS_KEYS
from mixmim.weights.checkpoint import adapt_to_model, encoder_state_dict, read_state_dict

log = logging.getLogger(__name__)

DROPPED_PREFIXES = ("head.",)  # classification head: not part of a detector


def map_encoder_keys(sd: dict[str, torch.Tensor], adapter: PyramidAdapter) -> dict[str, torch.Tensor]:
    """Backbone keys -> adapter keys (see the module docstring); ``head.*`` dropped."""
    last_norm = f"stage_norms.{len(adapter.encoder.stage_dims) - 1}."
    out = {}
    for key, value in sd.items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        if adapter.kind == "hierarchical" and key.startswith("norm."):
            out[last_norm + key.removeprefix("norm.")] = value
        else:
            out["encoder." + key] = value
    return out


def new_detection_keys(adapter: PyramidAdapter) -> set[str]:
    """Adapter keys that no backbone checkpoint provides (new layers), given a full backbone checkpoint."""
    keys = set(adapter.state_dict())
    provided = {k for k in keys if k.startswith("encoder.") and not k.endswith(REL_POS_KEYS)}  # ViTDet's new
    if adapter.kind == "hierarchical":
        provided |= {k for k in keys if k.startswith(f"stage_norms.{len(adapter.encoder.stage_dims) - 1}.")}
    return keys - provided


def _first(keys: list[str], n: int = 8) -> str:
    return str(keys[:n]) + ("..." if len(keys) > n else "")


def load_pretrained(adapter: PyramidAdapter, source: str | Path | dict) -> dict[str, list[str]]:
    """Load a backbone checkpoint into ``adapter`` (position embeddings and relative-position tables resized
    to the detection resolution and windows, as the official fine-tuning does).

    Returns:
        ``{"loaded": [...], "new": [...]}``: adapter keys taken from the checkpoint and keys left at init.

    Raises:
        RuntimeError: the checkpoint lacks backbone keys or has keys the backbone does not know (wrong backbone
            name or size), listing them.
    """
    sd = encoder_state_dict(read_state_dict(source))
    sd = adapt_to_model(sd, adapter.encoder)
    mapped = map_encoder_keys(sd, adapter)
    target = adapter.state_dict()
    unexpected = sorted(k for k in mapped if k not in target)
    missing = sorted(k for k in target if k not in mapped and k not in new_detection_keys(adapter))
    if unexpected or missing:
        name = "<dict>" if isinstance(source, dict) else source
        raise RuntimeError(
            f"checkpoint {name} does not match the {type(adapter.encoder).__name__} backbone: missing "
            f"{_first(missing)}, unexpected {_first(unexpected)}; check model.backbone")
    try:
        adapter.load_state_dict(mapped, strict=False)
    except RuntimeError as err:  # a size mismatch: another backbone size
        reason = str(err).splitlines()[-1].strip()
        raise RuntimeError(f"checkpoint does not fit model.backbone: {reason}") from None
    new = sorted(k for k in target if k not in mapped)
    log.info("loaded %d backbone tensors from %s; %d new detection tensors", len(mapped),
             source if not isinstance(source, dict) else "<dict>", len(new))
    return {"loaded": sorted(mapped), "new": new}
