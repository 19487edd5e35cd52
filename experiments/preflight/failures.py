"""A failed stage as one line: the run, the stage, the error and the config key to change. Torch-free."""

from __future__ import annotations

import re
from typing import Any

# (pattern on "ErrorType: message", the key to change; {stage} is filled in), first match wins
KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"InitWeightsError|init=|pre-trained encoder", "init"),
    (r"cannot fit a vocabulary", "method.vocab_size (or more training images)"),
    (r"^tokenizer:|tokenizer|DALL-E", "method.tokenizer_path (or method.tokenizer=kmeans)"),
    (r"detectron2", "coco.engine"),
    (r"CocoDataError|coco\.root|annotation", "coco.root"),
    (r"DatasetLayoutError|data\.root|ImageFolder", "data.root"),
    (r"OutOfMemory|out of memory|killed by signal 9|Cannot allocate",
     "{stage}.batch_size (or model.grad_checkpointing=true)"),
    (r"Mixup|even batch|batch_size|Expected more than 1 value", "{stage}.batch_size"),
    (r"precision|fp16|bf16", "{stage}.precision"),
    (r"img_size|image size|divisible|window|patch|Input (height|image)|size mismatch|shape", "{size_key}"),
)


def config_key(stage: str, error: str) -> str:
    """The config key a user changes to fix ``error`` (``"Type: message"``) of ``stage``."""
    size_key = "coco.img_size" if stage == "coco" else "model.img_size"
    for pattern, key in KEY_RULES:
        if re.search(pattern, f"{stage}: {error}", re.IGNORECASE):
            return key.format(stage=stage, size_key=size_key)
    return f"{stage}.* (see the log)"


def failure_line(row: dict[str, Any]) -> str:
    """``FAILED <stage> of <run> (+N runs): <error> -> change <key>; log: <path>``."""
    runs = row.get("runs") or ["?"]
    more = f" (+{len(runs) - 1} runs)" if len(runs) > 1 else ""
    if row.get("status") == "blocked":
        return f"BLOCKED {row['stage']} of {runs[0]}{more}: {row.get('error')}"
    return (f"FAILED {row['stage']} of {runs[0]}{more}: {row.get('error')} -> change {row.get('config_key')}; "
            f"log: {row.get('log')}")  # fmt: skip
